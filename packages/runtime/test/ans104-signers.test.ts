// Issue 23: data items made by the real AO client libraries — `@permaweb/aoconnect`'s
// createDataItemSigner(jwk) and `@dha-team/arbundles` (what aoconnect signs with) — for every common
// signature type (1 Arweave, 2 ED25519, 3 Ethereum, 4 Solana) are verified by our own code with the
// owner address AO gives them; altered ones are refused with a coded error; the AO MU route accepts
// them end to end.
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, type JsonWebKey } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  ArweaveSigner,
  createData,
  DataItem,
  EthereumSigner,
  HexSolanaSigner,
  type Signer,
  SolanaSigner,
} from '@dha-team/arbundles';
import { generateKeyPair, NonceCache } from '@formation/identity';
import { isFormError } from '@formation/interface';
import { type ApiServer, createApiServer, createLogger } from '@formation/service';
import { connect, createDataItemSigner } from '@permaweb/aoconnect';
import fc from 'fast-check';
import { createDataItem, parseDataItem, verifyDataItem } from '../src/ans104.ts';
import { registerAoRoutes } from '../src/ao.ts';
import type { ProcessManager } from '../src/manager.ts';

const target = Buffer.alloc(32, 7).toString('base64url');
const tags = [
  { name: 'Data-Protocol', value: 'ao' },
  { name: 'Type', value: 'Message' },
  { name: 'Action', value: 'Inc' },
  { name: 'Ünïcode', value: 'ß'.repeat(40) },
];
const b64sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('base64url');

/** Base58 (Bitcoin alphabet), for the Solana-style secret keys arbundles' Solana signers take. */
function base58(bytes: Uint8Array): string {
  const alphabet = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
  let n = BigInt(`0x${Buffer.from(bytes).toString('hex') || '0'}`);
  let out = '';
  while (n > 0n) {
    out = alphabet[Number(n % 58n)] + out;
    n /= 58n;
  }
  for (const b of bytes) {
    if (b !== 0) break;
    out = `1${out}`;
  }
  return out;
}

/** A coded error check that says what it got. */
function coded(...codes: string[]) {
  return (e: unknown) => {
    assert.ok(isFormError(e), `expected a FormError, got ${String(e)}`);
    assert.ok(codes.includes(e.code), `expected ${codes.join('|')}, got ${e.code}: ${e.message}`);
    assert.match(e.message, /^Cannot /);
    return true;
  };
}

interface Case {
  type: number;
  name: string;
  signer: Signer;
  address: string;
}

describe('ANS-104 signers: items made by arbundles / aoconnect', () => {
  let jwk: JsonWebKey;
  const cases: Case[] = [];

  before(() => {
    // an Arweave wallet is an RSA-4096 JWK (e = 65537)
    jwk = generateKeyPairSync('rsa', { modulusLength: 4096 }).privateKey.export({ format: 'jwk' });
    const ed = generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' });
    const secret = base58(Buffer.concat([Buffer.from(ed.d ?? '', 'base64url'), Buffer.from(ed.x ?? '', 'base64url')]));
    const eth = generateKeyPair();
    const pub = (s: string | undefined) => Buffer.from(s ?? '', 'base64url');
    cases.push(
      {
        type: 1,
        name: 'Arweave',
        signer: new ArweaveSigner(jwk as never),
        address: b64sha256(pub(jwk.n)),
      },
      // arbundles' SolanaSigner signs type 2 (plain ed25519); HexSolanaSigner type 4 (ed25519 over the hex)
      { type: 2, name: 'ED25519', signer: new SolanaSigner(secret), address: b64sha256(pub(ed.x)) },
      {
        type: 3,
        name: 'Ethereum',
        signer: new EthereumSigner(Buffer.from(eth.privateKey).toString('hex')),
        address: eth.address,
      },
      { type: 4, name: 'Solana', signer: new HexSolanaSigner(secret), address: b64sha256(pub(ed.x)) },
    );
  });

  async function make(c: Case, data = 'hello'): Promise<{ raw: Buffer; id: string }> {
    const item = createData(data, c.signer, { target, anchor: 'a'.repeat(32), tags });
    await item.sign(c.signer);
    assert.equal(await DataItem.verify(item.getRaw()), true, `arbundles accepts its own ${c.name} item`);
    return { raw: Buffer.from(item.getRaw()), id: item.id };
  }

  it('accepts an item of each type with the owner address AO gives it', async () => {
    for (const c of cases) {
      const { raw, id } = await make(c);
      const item = verifyDataItem(raw);
      assert.equal(item.signatureType, c.type, c.name);
      assert.equal(item.signatureName, c.name);
      assert.equal(item.id, id, `${c.name}: id is arbundles' id`);
      assert.equal(item.ownerAddress, c.address, `${c.name}: owner address`);
      assert.equal(item.target, target);
      assert.equal(item.anchor, Buffer.from('a'.repeat(32)).toString('base64url'));
      assert.deepEqual(item.tags, tags);
      assert.equal(item.data.toString(), 'hello');
      // and an empty item (no target, anchor, tags or data)
      const bare = createData('', c.signer);
      await bare.sign(c.signer);
      const b = verifyDataItem(Buffer.from(bare.getRaw()));
      assert.deepEqual([b.target, b.anchor, b.tags, b.data.length], ['', '', [], 0]);
    }
  });

  it("accepts aoconnect's createDataItemSigner(jwk) item (RSA-PSS, Node's maximum salt length)", async () => {
    const ao = connect({ MODE: 'legacy', MU_URL: 'http://127.0.0.1:9', CU_URL: 'http://127.0.0.1:9' });
    const signed = await ao.signMessage({
      process: target,
      data: '5',
      tags: [{ name: 'Action', value: 'Inc' }],
      anchor: undefined,
      signer: createDataItemSigner(jwk),
    });
    const item = verifyDataItem(Buffer.from(signed.raw));
    assert.equal(item.signatureType, 1);
    assert.equal(item.id, signed.id);
    assert.equal(item.ownerAddress, b64sha256(Buffer.from(jwk.n ?? '', 'base64url')));
    assert.equal(item.owner.length, 512);
    assert.equal(item.target, target);
    assert.equal(item.data.toString(), '5');
    assert.deepEqual(
      item.tags.find((t) => t.name === 'Action'),
      { name: 'Action', value: 'Inc' },
    );
  });

  it('refuses an item with a flipped byte in its signature, owner, tags or data (every type)', async () => {
    for (const c of cases) {
      const { raw } = await make(c);
      const good = parseDataItem(raw);
      const sigAt = 2;
      const ownerAt = 2 + good.signature.length;
      const tagsAt = raw.length - good.data.length - good.rawTags.length;
      const flip = (at: number, bit = 1) => {
        const b = Buffer.from(raw);
        b[at] = (b[at] as number) ^ bit;
        return b;
      };
      const where: Array<[string, number]> = [
        ['signature', sigAt + 10],
        ['signature end', ownerAt - 2],
        ['tags', tagsAt + 3],
        ['data', raw.length - 1],
      ];
      for (const [what, at] of where)
        assert.throws(() => verifyDataItem(flip(at)), coded('AUTH_BAD_SIGNATURE'), `${c.name}: ${what}`);
      // an altered owner is another key (a bad signature) or no key of its type (a secp256k1 point off the curve)
      assert.throws(
        () => verifyDataItem(flip(ownerAt + good.owner.length - 1)),
        c.type === 3 ? coded('AUTH_BAD_SIGNATURE', 'BAD_REQUEST') : coded('AUTH_BAD_SIGNATURE'),
        `${c.name}: owner`,
      );
      // a tag value byte changed so the Avro still parses (a different letter)
      const value = raw.indexOf(Buffer.from('ß'.repeat(40)));
      assert.ok(value > 0);
      assert.throws(() => verifyDataItem(flip(value + 1, 2)), coded('AUTH_BAD_SIGNATURE'), `${c.name}: tag value`);
      // the target too
      const t = raw.indexOf(Buffer.from(target, 'base64url'));
      assert.throws(() => verifyDataItem(flip(t)), coded('AUTH_BAD_SIGNATURE'), `${c.name}: target`);
    }
  });

  it('refuses a wrong signature type or length with a coded error', async () => {
    const byType = new Map<number, Buffer>();
    for (const c of cases) byType.set(c.type, (await make(c)).raw);
    const retype = (b: Buffer, t: number) => {
      const x = Buffer.from(b);
      x.writeUInt16LE(t);
      return x;
    };
    // 2 and 4 share lengths (ed25519): the type is signed, so relabelling one as the other fails
    assert.throws(() => verifyDataItem(retype(byType.get(2) as Buffer, 4)), coded('AUTH_BAD_SIGNATURE'));
    assert.throws(() => verifyDataItem(retype(byType.get(4) as Buffer, 2)), coded('AUTH_BAD_SIGNATURE'));
    // other relabellings misread the frame
    for (const [from, to] of [
      [1, 3],
      [3, 1],
      [3, 2],
      [2, 1],
    ] as const)
      assert.throws(
        () => verifyDataItem(retype(byType.get(from) as Buffer, to)),
        coded('BAD_REQUEST', 'AUTH_BAD_SIGNATURE'),
        `${from}→${to}`,
      );
    for (const t of [0, 5, 7, 101, 65535])
      assert.throws(
        () => verifyDataItem(retype(byType.get(1) as Buffer, t)),
        (e: unknown) => {
          coded('BAD_REQUEST')(e);
          assert.match(
            (e as Error).message,
            new RegExp(`unknown signature type ${t} \\(supported: 1 Arweave, 2 ED25519`),
          );
          return true;
        },
      );
    // cut inside the signature / owner
    const arweave = byType.get(1) as Buffer;
    for (const n of [100, 514, 600, 1025])
      assert.throws(() => verifyDataItem(arweave.subarray(0, n)), coded('BAD_REQUEST'), `cut at ${n}`);
    // an Arweave owner that is not a 4096-bit modulus (top bit clear)
    const small = Buffer.from(arweave);
    small[2 + 512] = 0x7f;
    assert.throws(
      () => verifyDataItem(small),
      (e: unknown) => {
        coded('BAD_REQUEST')(e);
        assert.match((e as Error).message, /not a 4096-bit RSA modulus/);
        return true;
      },
    );
  });

  it('refuses the re-signed forms of an Ethereum signature (v 0/1, high s): one id per signed message', async () => {
    const eth = cases.find((c) => c.type === 3) as Case;
    const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
    for (const raw of [(await make(eth)).raw, createDataItem(generateKeyPair(), { target, tags, data: 'hello' })]) {
      verifyDataItem(raw);
      const v = raw[66] as number;
      assert.ok(v === 27 || v === 28, `v is ${v}`);
      const lowV = Buffer.from(raw);
      lowV[66] = v - 27;
      assert.throws(() => verifyDataItem(lowV), coded('AUTH_BAD_SIGNATURE'), 'v 0/1');
      // (r, n - s) with the other recovery id is the same signature mathematically
      const s = BigInt(`0x${raw.subarray(34, 66).toString('hex')}`);
      assert.ok(s <= N / 2n, 'signers produce low s');
      const high = Buffer.from(raw);
      Buffer.from((N - s).toString(16).padStart(64, '0'), 'hex').copy(high, 34);
      high[66] = v === 27 ? 28 : 27;
      assert.throws(() => verifyDataItem(high), coded('AUTH_BAD_SIGNATURE'), 'high s');
    }
  });

  it('property: any change to an item of any type (bytes edited or cut) is refused with a coded error', async () => {
    const budget = Number(process.env.FORM_FUZZ_MS ?? 1500);
    const runs: Record<string, number> = {};
    for (const c of cases) {
      const { raw } = await make(c);
      runs[c.name] = 0;
      fc.assert(
        fc.property(
          fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
          fc.option(fc.nat(), { nil: undefined }),
          (edits, cut) => {
            runs[c.name] = (runs[c.name] ?? 0) + 1;
            let b: Buffer = Buffer.from(raw);
            for (const [pos, byte] of edits) b[pos % b.length] = byte;
            if (cut !== undefined) b = b.subarray(0, cut % (b.length + 1));
            if (b.equals(raw)) return;
            assert.throws(() => verifyDataItem(b), coded('BAD_REQUEST', 'AUTH_BAD_SIGNATURE'));
          },
        ),
        { numRuns: 1_000_000, interruptAfterTimeLimit: budget, markInterruptAsFailure: false },
      );
    }
    console.log(`# changed items refused in ${budget} ms per type: ${JSON.stringify(runs)}`);
  });

  it('verifies fast enough (prints items verified per second by type)', async () => {
    const rates: Record<string, number> = {};
    for (const c of cases) {
      const { raw } = await make(c, 'x'.repeat(1024));
      const t0 = performance.now();
      let n = 0;
      while (performance.now() - t0 < 300) {
        verifyDataItem(raw);
        n++;
      }
      rates[c.name] = Math.round(n / ((performance.now() - t0) / 1000));
      assert.ok((rates[c.name] ?? 0) > 5, `${c.name}: ${rates[c.name]}/s`);
    }
    console.log(`# ANS-104 verify per second (1 KiB data, this machine): ${JSON.stringify(rates)}`);
  });
});

describe('AO MU route with Arweave / ED25519 / Solana signed items (app.inject, recording manager)', () => {
  let app: ApiServer;
  const calls: Array<{ op: string; args: Record<string, unknown> }> = [];
  const manager = {
    listProcesses: () => [],
    async spawn(args: Record<string, unknown>) {
      calls.push({ op: 'spawn', args });
      return { id: args.id };
    },
    async send(pid: string, args: Record<string, unknown>) {
      calls.push({ op: 'send', args: { pid, ...args } });
      return { itemId: args.itemId };
    },
  } as unknown as ProcessManager;
  let jwk: JsonWebKey;

  before(async () => {
    app = await createApiServer({ name: 'runtime', logger: createLogger('silent') });
    registerAoRoutes(app, { manager, nonces: new NonceCache(), node: { id: '0xnode', name: 'n', url: 'http://x' } });
    await app.ready();
    jwk = generateKeyPairSync('rsa', { modulusLength: 4096 }).privateKey.export({ format: 'jwk' });
  });
  after(async () => {
    await app?.close();
  });

  const post = (body: Uint8Array) =>
    app.inject({
      method: 'POST',
      url: '/',
      headers: { 'content-type': 'application/octet-stream' },
      payload: Buffer.from(body),
    });

  it('spawns and messages as the Arweave wallet address; an altered item is 401', async () => {
    const address = b64sha256(Buffer.from(jwk.n ?? '', 'base64url'));
    const signer = new ArweaveSigner(jwk as never);
    const spawnItem = createData('State.count = 0', signer, {
      tags: [
        { name: 'Data-Protocol', value: 'ao' },
        { name: 'Type', value: 'Process' },
        { name: 'Module', value: 'mod-1' },
      ],
    });
    await spawnItem.sign(signer);
    const r1 = await post(spawnItem.getRaw());
    assert.equal(r1.statusCode, 202, r1.body);
    assert.equal(r1.json().id, spawnItem.id);
    assert.deepEqual(calls.at(-1), {
      op: 'spawn',
      args: { module: 'mod-1', owner: address, data: 'State.count = 0', tags: spawnItem.tags, id: spawnItem.id },
    });

    // a message as aoconnect signs it
    const ao = connect({ MODE: 'legacy', MU_URL: 'http://127.0.0.1:9', CU_URL: 'http://127.0.0.1:9' });
    const msg = await ao.signMessage({
      process: spawnItem.id,
      data: '5',
      tags: [{ name: 'Action', value: 'Inc' }],
      anchor: undefined,
      signer: createDataItemSigner(jwk),
    });
    const r2 = await post(msg.raw);
    assert.equal(r2.statusCode, 202, r2.body);
    assert.equal(r2.json().id, msg.id);
    const sent = calls.at(-1);
    assert.equal(sent?.op, 'send');
    assert.equal(sent?.args.pid, spawnItem.id);
    assert.equal(sent?.args.from, address);
    assert.equal(sent?.args.action, 'Inc');
    assert.equal(sent?.args.data, '5');
    assert.equal(sent?.args.itemId, msg.id);

    const n = calls.length;
    const bad = Buffer.from(msg.raw);
    bad[bad.length - 1] = 0x36; // data '5' → '6'
    const r3 = await post(bad);
    assert.equal(r3.statusCode, 401);
    assert.equal(r3.json().error.code, 'AUTH_BAD_SIGNATURE');
    assert.equal(calls.length, n, 'nothing reached the manager');
  });

  it('messages as an ED25519 and a Solana signer (owner = base64url sha256 of the public key)', async () => {
    const ed = generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' });
    const secret = base58(Buffer.concat([Buffer.from(ed.d ?? '', 'base64url'), Buffer.from(ed.x ?? '', 'base64url')]));
    for (const signer of [new SolanaSigner(secret), new HexSolanaSigner(secret)]) {
      const item = createData('1', signer, {
        target,
        tags: [
          { name: 'Type', value: 'Message' },
          { name: 'Action', value: 'Inc' },
        ],
      });
      await item.sign(signer);
      const r = await post(item.getRaw());
      assert.equal(r.statusCode, 202, r.body);
      assert.equal(calls.at(-1)?.args.from, b64sha256(Buffer.from(ed.x ?? '', 'base64url')));
      assert.equal(calls.at(-1)?.args.itemId, item.id);
    }
  });
});
