// Run inside node 1's host namespace by a world devnet (its state API is on that host's loopback only):
// the devnet's admin signs a `node.admit` for a joining node, as an operator's `form node admit` does.
//   node devnet-admit.ts <state url> <admin key file> <node key> <formnet range>
import { loadKey } from '@formation/identity';
import { httpStateClient } from '@formation/state';

const [stateUrl, keyFile, node, formnetRange] = process.argv.slice(2);
if (!stateUrl || !keyFile || !node || !formnetRange) {
  process.stderr.write('usage: devnet-admit.ts <state url> <admin key file> <node key> <formnet range>\n');
  process.exit(2);
}
try {
  const admin = await loadKey(keyFile);
  const op = await httpStateClient(stateUrl).author(admin, 'node.admit', { node, formnetRange });
  process.stdout.write(`${JSON.stringify({ node, formnetRange, op: op.hash })}\n`);
} catch (err) {
  process.stderr.write(`devnet-admit: ${(err as Error).message}\n`);
  process.exit(1);
}
