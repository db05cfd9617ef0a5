// A node answers a join with interface settings the member applies to its own namespace — on a
// developer's laptop, not a throwaway namespace. A hostile node must not be able to take the
// laptop's default route (leak-guard "network" 0.0.0.0/0), a LAN subnet (an interface address with a
// short prefix, which adds a connected route) or an address outside formnet.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { generateWireGuardKeyPair } from '@formation/identity';
import { requireOrSkip } from '@formation/interface/testing';
import { createLogger } from '@formation/service';
import { bringUpMember, createNetns, deleteNetns, type JoinResponse, joinAnswerProblem, run } from '../src/index.ts';

const N = process.pid % 10000;
const NS = `fdc${N}-h`;
const logger = createLogger('silent');
const skip = requireOrSkip('hostile join answer test', { root: true, programs: ['ip', 'wg', 'wireguard-go'] });

function answer(iface: Partial<JoinResponse['interface']>): JoinResponse {
  return {
    address: '10.128.9.9',
    member: { id: '0xme', kind: 'developer', wgPublicKey: generateWireGuardKeyPair().publicKey, address: '10.128.9.9' },
    interface: { address: '10.128.9.9/32', mtu: 1420, network: '10.128.0.0/9', ...iface },
    peers: [],
  };
}

test('joinAnswerProblem: only a /32 inside formnet, the formnet leak-guard range, a sane MTU', () => {
  assert.equal(joinAnswerProblem(answer({})), undefined);
  assert.match(
    joinAnswerProblem(answer({ network: '0.0.0.0/0' })) as string,
    /network "0\.0\.0\.0\/0" is not 10\.128\.0\.0\/9/,
  );
  assert.match(joinAnswerProblem(answer({ network: '10.0.0.0/8' })) as string, /network/);
  assert.match(joinAnswerProblem(answer({ address: '10.128.9.9/8' })) as string, /\/32/);
  assert.match(joinAnswerProblem({ ...answer({}), address: '10.128.9.8' }) as string, /differ/);
  assert.match(joinAnswerProblem(answer({ address: '192.0.2.1/32' })) as string, /outside 10\.128\.0\.0\/9/);
  assert.match(joinAnswerProblem(answer({ address: 'x' })) as string, /address/);
  assert.match(joinAnswerProblem(answer({ mtu: 70000 })) as string, /MTU/);
  assert.match(joinAnswerProblem({} as JoinResponse) as string, /interface/);
});

test('bringUpMember refuses a hostile join answer and leaves the namespace as it was', { skip }, async (t) => {
  await createNetns(NS);
  t.after(() => deleteNetns(NS));
  await run('ip', ['link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up1'], { netns: NS });
  await run('ip', ['link', 'set', 'up1', 'up'], { netns: NS });
  await run('ip', ['addr', 'add', '192.0.2.2/24', 'dev', 'up0'], { netns: NS });
  await run('ip', ['link', 'set', 'up0', 'up'], { netns: NS });
  await run('ip', ['route', 'add', 'default', 'via', '192.0.2.1'], { netns: NS });
  const routesBefore = await run('ip', ['-4', 'route', 'show'], { netns: NS });
  for (const [i, bad] of [{ network: '0.0.0.0/0' }, { address: '10.0.0.1/8' }, { address: '192.0.2.9/32' }].entries()) {
    const outcome = await bringUpMember({
      name: `fdch${N}${i}`,
      netns: NS,
      privateKey: generateWireGuardKeyPair().privateKey,
      join: answer(bad),
      logger,
    }).then(
      async (dev) => {
        await dev.destroy(); // accepted: clean up before failing below
        return 'accepted';
      },
      (err: Error & { code?: string }) => `${err.code}: ${err.message}`,
    );
    assert.match(outcome, /^NET_BAD_PEER: Cannot use the node's join answer/);
    assert.equal(
      await run('ip', ['-4', 'route', 'show'], { netns: NS }),
      routesBefore,
      `routes unchanged after ${JSON.stringify(bad)}`,
    );
    assert.doesNotMatch(await run('ip', ['-o', 'link', 'show'], { netns: NS }), new RegExp(`fdch${N}${i}`));
  }
});

after(() => deleteNetns(NS));
