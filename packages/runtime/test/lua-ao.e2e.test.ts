// Issue 23, end to end (runc + Redis): an aos-style session with the real client libraries against
// the Lua runtime. An Arweave wallet spawns a Lua process with aoconnect's `spawn` (which looks the
// module up over /graphql), messages it with `message`, reads `result`/`results`/`dryrun`, Evals as
// the owner (another wallet is refused), sends process-to-process messages and spawns a child from a
// process, and checkpoints/restores with ANS-104 items signed by the wallet (another wallet refused).
import assert from 'node:assert/strict';
import { createHash, type JsonWebKey } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ArweaveSigner, createData, EthereumSigner } from '@dha-team/arbundles';
import { generateKeyPair } from '@formation/identity';
import { connect, createDataItemSigner } from '@permaweb/aoconnect';
import { RuntimeClient } from '../src/client.ts';
import { buildLuaRuntimeImage } from '../src/lua-image.ts';
import { MAX_CHAIN_DELIVERIES } from '../src/outbox.ts';
import type { RuntimeService } from '../src/service.ts';
import { AoTestNode } from './ao-node.ts';
import { CACHE_DIR, integrationSkip } from './helpers.ts';

const skip = await integrationSkip(true);
const legacy = (u: string) => connect({ MODE: 'legacy', MU_URL: u, CU_URL: u, GATEWAY_URL: u });

const COUNTER_LUA = `
Count = Count or 0
Handlers.add('inc', 'Inc', function(msg)
  Count = Count + tonumber(msg.Data or '1')
  msg.reply({ Action = 'Count', Data = tostring(Count) })
  print('count is ' .. Count)
end)
Handlers.add('get', 'Get', function(msg) print(Count) end)
Handlers.add('pong', 'Pong', function(msg) Pongs = (Pongs or 0) + 1; LastPong = msg.Data end)
Handlers.add('ping', 'Ping', function(msg) msg.reply({ Action = 'Pong', Data = 'pong from ' .. ao.id }) end)
Handlers.add('spawned', 'Spawned', function(msg) Kid = msg.Process end)
`;

const address = (k: JsonWebKey) =>
  createHash('sha256')
    .update(Buffer.from(k.n ?? '', 'base64url'))
    .digest('base64url');
const out = (r: { Output?: string | { data: string } }) =>
  typeof r.Output === 'string' ? r.Output : (r.Output?.data ?? '');

describe('aos-style session on the Lua runtime with an Arweave wallet (runc, Redis, aoconnect)', { skip }, () => {
  const node = new AoTestNode('lua', skip);
  let svc: RuntimeService;
  let url = '';
  let moduleId = '';
  let jwk: JsonWebKey;
  let other: JsonWebKey;
  let ao: ReturnType<typeof legacy>;
  let pid = '';

  before(async () => {
    ({ svc, url, moduleId, wallet: jwk, otherWallet: other } = await node.start());
    ao = legacy(url);
  });

  after(() => node.stop());

  it('an admin builds the same Lua image on the node (reproducible: same image id)', async () => {
    const built = await buildLuaRuntimeImage(CACHE_DIR);
    const onNode = await new RuntimeClient(url, node.admin).buildLuaImage();
    assert.equal(onNode.id, built.imageId);
    assert.deepEqual(onNode.repoTags, ['formation/lua-runtime:0.1.0']);
  });

  const send = async (wallet: JsonWebKey, process: string, action: string, data = '') => {
    const sent = await ao.message({
      process,
      data,
      tags: [{ name: 'Action', value: action }],
      signer: createDataItemSigner(wallet),
    });
    // legacy mode answers the message id (HyperBEAM mode would answer {slot, id})
    const id = typeof sent === 'string' ? sent : sent.id;
    return { id, ...(await ao.result({ process, message: id })) };
  };

  it('spawn with aoconnect (module looked up over /graphql), message, result, results, dryrun', async () => {
    pid = await ao.spawn({
      module: moduleId,
      scheduler: svc.nodeId,
      signer: createDataItemSigner(jwk),
      tags: [{ name: 'Name', value: 'counter' }],
      data: COUNTER_LUA,
    });
    assert.equal(svc.manager.process(pid).owner, address(jwk));

    const inc = await send(jwk, pid, 'Inc', '5');
    assert.equal(inc.Error, undefined, String(inc.Error));
    assert.match(out(inc), /count is 5/);
    assert.equal(inc.Messages.length, 1);
    assert.equal(inc.Messages[0].Target, address(jwk), 'the reply goes to the wallet');
    assert.equal(inc.Messages[0].Data, '5');
    await send(other, pid, 'Inc', '2');

    const dry = await ao.dryrun({ process: pid, tags: [{ name: 'Action', value: 'Inc' }], data: '100' });
    assert.match(out(dry), /count is 107/);
    const get = await send(other, pid, 'Get');
    assert.equal(out(get).trim(), '7', 'the dry run changed nothing');

    const listed = await ao.results({ process: pid, limit: 10 });
    assert.equal(listed.edges.length, 3);
    assert.equal(listed.edges[0]?.node.Messages[0]?.Data, '5');
    const latest = await ao.results({ process: pid, sort: 'DESC', limit: 2 });
    assert.deepEqual(
      latest.edges.map((e: { cursor: string }) => e.cursor),
      ['3', '2'],
      'newest first, as aos asks for its live view',
    );
  });

  it("an Ethereum key works through aoconnect too: spawns and Evals its own process, is refused in the wallet's", async () => {
    const eth = generateKeyPair();
    const es = new EthereumSigner(Buffer.from(eth.privateKey).toString('hex'));
    // aoconnect's signer contract: create() gives the deep hash of the unsigned item of this type/key
    const ethSigner = (async (create: (o: { type: number; publicKey: Uint8Array }) => Promise<Uint8Array>) => ({
      signature: await es.sign(await create({ type: 3, publicKey: es.publicKey })),
    })) as never;
    const own = await ao.spawn({ module: moduleId, scheduler: svc.nodeId, signer: ethSigner, data: COUNTER_LUA });
    assert.equal(svc.manager.process(own).owner, eth.address);
    const run = async (process: string, code: string) => {
      const sent = await ao.message({
        process,
        signer: ethSigner,
        data: code,
        tags: [{ name: 'Action', value: 'Eval' }],
      });
      return ao.result({ process, message: typeof sent === 'string' ? sent : sent.id });
    };
    const mine = await run(own, 'return ao.env.Process.Owner');
    assert.equal(mine.Error, undefined);
    assert.equal(out(mine).trim(), eth.address);
    assert.match(String((await run(pid, 'Count = 0')).Error), /only allowed from the process owner/);
  });

  it('finds the process by Name and owner over /graphql, as aos does at start', async () => {
    const res = await fetch(`${url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        query: `query ($owners: [String!]!, $names: [String!]!) {
          transactions(first: 1, owners: $owners, tags: [{ name: "Type", values: ["Process"] }, { name: "Name", values: $names }]) {
            edges { node { id tags { name value } } } } }`,
        variables: { owners: [address(jwk)], names: ['counter'] },
      }),
    });
    const body = (await res.json()) as { data: { transactions: { edges: Array<{ node: { id: string } }> } } };
    assert.deepEqual(
      body.data.transactions.edges.map((e) => e.node.id),
      [pid],
    );
    const none = await fetch(`${url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ transactions(owners: ["nobody"]) { edges { node { id } } } }' }),
    });
    assert.deepEqual(
      ((await none.json()) as { data: { transactions: { edges: unknown[] } } }).data.transactions.edges,
      [],
    );
  });

  it('Eval by the owner runs; Eval by another wallet is an Error and changes nothing', async () => {
    const ok = await send(jwk, pid, 'Eval', 'Count = Count + 1000; return Count');
    assert.equal(ok.Error, undefined);
    assert.match(out(ok), /1007/);
    const refused = await send(other, pid, 'Eval', 'Count = -1');
    assert.match(String(refused.Error), /only allowed from the process owner/);
    assert.equal(out(await send(other, pid, 'Get')).trim(), '1007');
  });

  it('process-to-process messages are delivered and chained; Spawn from a process creates a child', async () => {
    const b = await ao.spawn({
      module: moduleId,
      scheduler: svc.nodeId,
      signer: createDataItemSigner(jwk),
      tags: [{ name: 'Name', value: 'pinger' }],
      data: COUNTER_LUA,
    });
    const sent = await send(jwk, pid, 'Eval', `Send({ Target = '${b}', Action = 'Ping' }); return 'sent'`);
    assert.equal(sent.Error, undefined);
    await svc.manager.settled();
    // A -> B (Ping), B -> A (Pong): A's state shows the chained reply
    assert.equal(out(await send(jwk, pid, 'Eval', 'return Pongs')).trim(), '1');
    assert.equal(out(await send(jwk, pid, 'Eval', 'return LastPong')).trim(), `pong from ${b}`);
    const bResults = await ao.results({ process: b, limit: 5 });
    assert.equal(bResults.edges[0]?.node.Messages[0]?.Target, pid);

    const spawning = await send(
      jwk,
      pid,
      'Eval',
      "Spawn(ao.env.Module.Id, { Data = 'Child = true', Tags = { Name = 'kid' } }); return 'ok'",
    );
    assert.equal(spawning.Error, undefined);
    assert.equal(spawning.Spawns.length, 1);
    await svc.manager.settled();
    const kid = out(await send(jwk, pid, 'Eval', 'return Kid')).trim();
    assert.equal(svc.manager.process(kid).owner, pid, 'the child belongs to the process that spawned it');
    const kidState = await ao.dryrun({ process: kid, tags: [{ name: 'Action', value: 'Anything' }] });
    assert.match(out(kidState), /New Message From/);
  });

  it('a message that eats all memory becomes an Error; the process keeps its state', async () => {
    const before = out(await send(other, pid, 'Get')).trim();
    const hog = await send(
      jwk,
      pid,
      'Eval',
      "Count = -5; local t = {} for i = 1, 1e6 do t[i] = string.rep('x', 1048576) .. i end",
    );
    assert.match(String(hog.Error), /crashed|not enough memory|time limit/);
    assert.equal(out(await send(other, pid, 'Get')).trim(), before);
  });

  it('a process that doubles its own messages stops at the chain budget (no exponential fan-out)', async () => {
    await send(
      jwk,
      pid,
      'Eval',
      "Handlers.add('bomb', 'Bomb', function() Send({ Target = ao.id, Action = 'Bomb' }); Send({ Target = ao.id, Action = 'Bomb' }) end)",
    );
    await svc.manager.settled();
    const before = svc.manager.process(pid).lastSequence;
    await send(other, pid, 'Bomb');
    await svc.manager.settled();
    assert.equal(svc.manager.process(pid).lastSequence - before, 1 + MAX_CHAIN_DELIVERIES);
    await send(jwk, pid, 'Eval', "Handlers.remove('bomb')");
  });

  it('checkpoint and restore by the owner wallet (ANS-104 items); another wallet is refused; replay is exact', async () => {
    const item = async (wallet: JsonWebKey, action: string, extra: Array<{ name: string; value: string }> = []) => {
      const signer = new ArweaveSigner(wallet as never);
      const d = createData('', signer, {
        tags: [
          { name: 'Action', value: action },
          { name: 'Process', value: pid },
          { name: 'Timestamp', value: String(Date.now()) },
          ...extra,
        ],
      });
      await d.sign(signer);
      return Buffer.from(d.getRaw());
    };
    const post = async (path: string, body: Buffer) => {
      const res = await fetch(`${url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body,
      });
      return {
        status: res.status,
        body: (await res.json()) as { sha256?: string; error?: { code: string; message: string } },
      };
    };
    const refused = await post(`/processes/${pid}/checkpoint`, await item(other, 'Checkpoint'));
    assert.equal(refused.status, 403);
    assert.equal(refused.body.error?.code, 'AUTH_FORBIDDEN');
    const cpItem = await item(jwk, 'Checkpoint');
    const cp = await post(`/processes/${pid}/checkpoint`, cpItem);
    assert.equal(cp.status, 200, JSON.stringify(cp.body));
    const sha = cp.body.sha256 ?? '';
    assert.match(sha, /^[0-9a-f]{64}$/);
    const replayed = await post(`/processes/${pid}/checkpoint`, cpItem);
    assert.equal(replayed.status, 403, 'the same signed item cannot be posted twice');

    const after1 = [await send(jwk, pid, 'Inc', '3'), await send(jwk, pid, 'Inc', '4')].map((r) => r.Messages[0]?.Data);
    const otherRestore = await post(
      `/processes/${pid}/restore`,
      await item(other, 'Restore', [{ name: 'Checkpoint', value: sha }]),
    );
    assert.equal(otherRestore.status, 403);
    const restored = await post(
      `/processes/${pid}/restore`,
      await item(jwk, 'Restore', [{ name: 'Checkpoint', value: sha }]),
    );
    assert.equal(restored.status, 200, JSON.stringify(restored.body));
    const after2 = [await send(jwk, pid, 'Inc', '3'), await send(jwk, pid, 'Inc', '4')].map((r) => r.Messages[0]?.Data);
    assert.deepEqual(after2, after1, 'the same messages after the restore give the same results');
    assert.deepEqual(after1, ['1010', '1014']);
  });
});
