// An aos-style session against a Formation node, with an Arweave wallet and the real aoconnect:
// spawn a Lua process, Eval a handler into it, Send a message, read the Inbox — what an aos user types.
//   node packages/runtime/examples/aos-session.mjs <node url> <lua module id> [wallet.json]
// The wallet is an Arweave JWK (made and saved when the file does not exist yet).
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createDataItemSigner } from '@permaweb/aoconnect';

const [url, moduleId, walletFile = 'wallet.json'] = process.argv.slice(2);
if (!url || !moduleId) {
  process.stderr.write('usage: node aos-session.mjs <node url> <lua module id> [wallet.json]\n');
  process.exit(2);
}
if (!existsSync(walletFile))
  writeFileSync(
    walletFile,
    JSON.stringify(generateKeyPairSync('rsa', { modulusLength: 4096 }).privateKey.export({ format: 'jwk' })),
    { mode: 0o600 },
  );
const signer = createDataItemSigner(JSON.parse(readFileSync(walletFile, 'utf8')));
const ao = connect({ MODE: 'legacy', MU_URL: url, CU_URL: url, GATEWAY_URL: url });
const scheduler = (await (await fetch(`${url}/`)).json()).Address;
const out = (r) => (typeof r.Output === 'string' ? r.Output : (r.Output?.data ?? ''));

// aos> (spawn)
const pid = await ao.spawn({ module: moduleId, scheduler, signer, tags: [{ name: 'Name', value: 'my-aos' }] });
process.stdout.write(`process ${pid}\n`);
const evaluate = async (code) => {
  const message = await ao.message({ process: pid, signer, data: code, tags: [{ name: 'Action', value: 'Eval' }] });
  const r = await ao.result({ process: pid, message });
  process.stdout.write(`aos> ${code}\n${r.Error ? `Error: ${r.Error}` : out(r)}\n`);
  return r;
};
await evaluate(`Handlers.add('ping', 'Ping', function(msg) msg.reply({ Data = 'pong' }) end)`);
await evaluate(`Send({ Target = ao.id, Action = 'Ping' })`);
await new Promise((r) => setTimeout(r, 500)); // the node delivers Ping, then the reply, on its own
await evaluate('#Inbox');
await evaluate('Inbox[#Inbox].Data');
