// Issue 23, end to end (runc + Redis): an Arweave wallet — the stock aos/aoconnect user — spawns a JS
// process with an ANS-104 item signed by @dha-team/arbundles, messages it with items signed by
// aoconnect's createDataItemSigner(jwk), reads results with aoconnect's `result`, and is the process
// owner inside the container (its Eval runs; another wallet's Eval is refused).
import assert from 'node:assert/strict';
import { createHash, type JsonWebKey } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ArweaveSigner, createData } from '@dha-team/arbundles';
import { connect, createDataItemSigner } from '@permaweb/aoconnect';
import type { RuntimeService } from '../src/service.ts';
import { AoTestNode } from './ao-node.ts';
import { COUNTER_SRC, integrationSkip } from './helpers.ts';

const skip = await integrationSkip(true);

describe('AO with an Arweave wallet, end to end (runc, Redis, JS runtime)', { skip }, () => {
  const node = new AoTestNode('js', skip);
  let svc: RuntimeService;
  let url = '';
  let moduleId = '';
  let jwk: JsonWebKey;
  let other: JsonWebKey;

  before(async () => {
    ({ svc, url, moduleId, wallet: jwk, otherWallet: other } = await node.start());
  });

  after(() => node.stop());

  it('spawns, messages, Evals and reads results as the wallet address', async () => {
    const address = createHash('sha256')
      .update(Buffer.from(jwk.n ?? '', 'base64url'))
      .digest('base64url');
    const post = async (raw: Uint8Array) => {
      const res = await fetch(`${url}/`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body: Buffer.from(raw),
      });
      return { status: res.status, body: (await res.json()) as { id?: string; error?: { code: string } } };
    };

    const signer = new ArweaveSigner(jwk as never);
    const spawnItem = createData(COUNTER_SRC, signer, {
      tags: [
        { name: 'Data-Protocol', value: 'ao' },
        { name: 'Variant', value: 'ao.TN.1' },
        { name: 'Type', value: 'Process' },
        { name: 'Module', value: moduleId },
        { name: 'Scheduler', value: svc.nodeId },
      ],
    });
    await spawnItem.sign(signer);
    const spawned = await post(spawnItem.getRaw());
    assert.equal(spawned.status, 202, JSON.stringify(spawned.body));
    const pid = spawnItem.id;
    assert.equal(spawned.body.id, pid);
    assert.equal(svc.manager.process(pid).owner, address, 'the Arweave wallet owns the process');

    const ao = connect({ MODE: 'legacy', MU_URL: url, CU_URL: url, GATEWAY_URL: 'http://127.0.0.1:9' });
    const send = async (wallet: JsonWebKey, action: string, data: string) => {
      const item = await ao.signMessage({
        process: pid,
        data,
        tags: [{ name: 'Action', value: action }],
        anchor: undefined,
        signer: createDataItemSigner(wallet),
      });
      const r = await post(item.raw);
      assert.equal(r.status, 202, JSON.stringify(r.body));
      assert.equal(r.body.id, item.id);
      return ao.result({ process: pid, message: item.id });
    };
    const out = (r: { Output: string | { data: string } }) => (typeof r.Output === 'string' ? r.Output : r.Output.data);

    const inc = await send(jwk, 'Inc', '5');
    assert.equal(inc.Error, undefined);
    assert.match(out(inc), /inc to 5/);
    const evald = await send(jwk, 'Eval', "State.count = 100; Handlers.add('who', 'Who', (m) => m.From); 'ok'");
    assert.equal(evald.Error, undefined, 'the owner may Eval');
    const who = await send(other, 'Who', '');
    assert.equal(who.Error, undefined);
    const otherAddress = createHash('sha256')
      .update(Buffer.from(other.n ?? '', 'base64url'))
      .digest('base64url');
    assert.equal(out(who).trim(), otherAddress, 'msg.From is the sending wallet address');
    const refused = await send(other, 'Eval', 'State.count = -1');
    assert.match(refused.Error ?? '', /only allowed from the process owner/);
    const get = await send(other, 'Get', '');
    assert.match(out(get), /^100$/m, "another wallet's Eval changed nothing");
    assert.equal(svc.manager.process(pid).lastSequence, 5);
  });
});
