import { Builder } from '../src/index.ts';
import { helloSpec } from '../test/spec.ts';
const b = new Builder({ dataDir: '/var/tmp/formation-pack-try', cacheDir: '/var/tmp/formation-pack-cache' });
const t0 = Date.now();
const r = await b.build({ spec: helloSpec(), dir: '/work/main/examples/hello-server', owner: 'local', onEvent: (e) => { if (e.type === 'step') console.log((e.elapsedMs/1000).toFixed(1), e.step, e.detail ?? ''); else if (process.env.V) console.log('   ', e.line); } });
console.log(r.id, r.cached, (Date.now()-t0)/1000, r.manifest.artifacts.disk.bytes/2**20);
