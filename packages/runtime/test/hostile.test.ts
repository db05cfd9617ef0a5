// Issue 17 (hostile peers and tenants): each test here is an exploit that worked on the runtime
// before its fix. Image layers that reach outside the root, image import from any signer.
import assert from 'node:assert/strict';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { generateKeyPair, type KeyPair, NonceCache, signRequest } from '@formation/identity';
import { createApiServer, createLogger } from '@formation/service';
import { registerRuntimeRoutes } from '../src/api.ts';
import { ownedDir } from '../src/dirs.ts';
import { writeDockerArchive } from '../src/docker-archive.ts';
import { ImageStore } from '../src/image-store.ts';
import { buildJsRuntimeImage } from '../src/js-image.ts';
import type { ProcessManager } from '../src/manager.ts';
import { rawTar, tinyArchive, tmp } from './helpers.ts';

const logger = createLogger('silent');
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
function work(name: string): string {
  const d = tmp(name);
  dirs.push(d);
  return d;
}

type Entry = Parameters<typeof rawTar>[0][number];

/** A docker save archive whose layers are the given raw tar entry lists. */
async function hostileArchive(w: string, layers: Entry[][]): Promise<string> {
  const files = layers.map((entries, i) => {
    const f = join(w, `layer${i}.tar`);
    writeFileSync(f, rawTar(entries));
    return { tarFile: f };
  });
  const out = join(w, 'hostile.tar');
  await writeDockerArchive({ out, repoTag: 'evil:1', layers: files, config: { Cmd: ['/x'] } });
  return out;
}

/** A directory outside the image store holding a marker file the image tries to reach. */
function victim(): { dir: string; marker: string; rel: string } {
  const dir = work('victim');
  const marker = join(dir, 'marker');
  writeFileSync(marker, 'host data');
  return { dir, marker, rel: dir.replace(/^\/+/, '') };
}

const refused = (e: Error & { code?: string }) => e.code === 'RUNTIME_IMAGE_INVALID' && /^Cannot /.test(e.message);

describe('hostile image layers never touch the host outside the image root', () => {
  const cases: Array<[string, (v: ReturnType<typeof victim>) => Entry[][]]> = [
    [
      'a symlink to / then a whiteout through it',
      (v) => [[{ name: 'up', type: '2', linkname: '/.' }], [{ name: `up/${v.rel}/.wh.marker` }]],
    ],
    [
      'a symlink to a host directory then a whiteout through it',
      (v) => [[{ name: 'up', type: '2', linkname: `/${v.rel}` }], [{ name: 'up/.wh.marker' }]],
    ],
    [
      'a relative symlink up with .. then a whiteout through it',
      (v) => [
        [{ name: 'up', type: '2', linkname: '../../../../../../../../../..' }],
        [{ name: `up/${v.rel}/.wh.marker` }],
      ],
    ],
    [
      'a symlink to / then an opaque whiteout through it',
      (v) => [[{ name: 'up', type: '2', linkname: '/.' }], [{ name: `up/${v.rel}/.wh..wh..opq` }]],
    ],
    [
      'a symlink to a host directory then a regular file written through it',
      (v) => [[{ name: 'up', type: '2', linkname: `/${v.rel}` }], [{ name: 'up/marker', data: 'owned' }]],
    ],
    [
      'a symlink to a host directory then a directory entry through it',
      (v) => [[{ name: 'up', type: '2', linkname: `/${v.rel}` }], [{ name: 'up/newdir/', type: '5', mode: 0o777 }]],
    ],
    [
      'a symlink to / then a hard link to a host file through it',
      (v) => [
        [{ name: 'up', type: '2', linkname: '/.' }],
        [{ name: 'grab', type: '1', linkname: `up/${v.rel}/marker` }],
      ],
    ],
    [
      'a symlink to the host file then a hard link to the symlink, then a write to the hard link',
      (v) => [
        [{ name: 'ln', type: '2', linkname: `/${v.rel}/marker` }],
        [{ name: 'hl', type: '1', linkname: 'ln' }],
        [{ name: 'hl', data: 'owned' }],
      ],
    ],
  ];
  for (const [what, layers] of cases) {
    it(`refuses or contains ${what}`, async () => {
      const v = victim();
      const w = work('layers');
      const archive = await hostileArchive(w, layers(v));
      const store = new ImageStore(join(w, 'store'), logger);
      let err: unknown;
      try {
        await store.import(archive);
      } catch (e) {
        err = e;
      }
      assert.equal(existsSync(v.marker), true, 'the host file outside the root still exists');
      assert.equal(readFileSync(v.marker, 'utf8'), 'host data', 'the host file is unchanged');
      assert.equal(statSync(v.marker).nlink, 1, 'no hard link to the host file was made');
      assert.deepEqual(readdirSync(v.dir), ['marker'], 'nothing was created next to it');
      if (err !== undefined) assert.ok(refused(err as Error), `a coded refusal, got ${String(err)}`);
    });
  }

  it('contains an absolute symlink: kept as the image says, resolved only inside the container', async () => {
    const v = victim();
    const w = work('contain');
    const archive = await hostileArchive(w, [
      [
        { name: 'etc/', type: '5', mode: 0o755 },
        { name: 'etc/m', type: '2', linkname: `/${v.rel}/marker` },
      ],
    ]);
    const img = await new ImageStore(join(w, 'store'), logger).import(archive);
    assert.equal(readlinkSync(join(img.rootfs, 'etc/m')), `/${v.rel}/marker`);
    assert.equal(readFileSync(v.marker, 'utf8'), 'host data');
  });
});

describe('image import is for explicit admins only', () => {
  async function server(admins: string[] | undefined, w: string) {
    const app = await createApiServer({ name: 'runtime-test', logger });
    registerRuntimeRoutes(app, {
      manager: {} as ProcessManager,
      images: new ImageStore(join(w, 'store'), logger),
      cacheDir: join(w, 'cache'),
      nonces: new NonceCache(),
      node: { id: '0xnode', name: 'n', desc: '', url: 'http://127.0.0.1' },
      ...(admins ? { admins } : {}),
    });
    await app.ready();
    return app;
  }
  async function importAs(app: Awaited<ReturnType<typeof server>>, key: KeyPair, path: string) {
    const body = JSON.stringify({ path });
    const res = await app.inject({
      method: 'POST',
      url: '/images/import',
      headers: {
        'content-type': 'application/json',
        ...signRequest(key, { method: 'POST', path: '/images/import', body, audience: app.formIdentity.id }),
      },
      payload: body,
    });
    return { status: res.statusCode, body: res.json() as { error?: { code: string; message: string; hint?: string } } };
  }

  it('with no admins configured, nobody may import an image from a host path, and the error says how to set admins', async () => {
    const w = work('noadmins');
    const { archive } = await tinyArchive(w);
    for (const admins of [undefined, []]) {
      const app = await server(admins, w);
      const r = await importAs(app, generateKeyPair(), archive);
      await app.close();
      assert.equal(r.status, 403);
      assert.equal(r.body.error?.code, 'AUTH_FORBIDDEN');
      assert.match(
        r.body.error?.message ?? '',
        /^Cannot import images or register modules: this runtime has no admins/,
      );
      assert.match(r.body.error?.hint ?? '', /admins/);
      assert.deepEqual(await new ImageStore(join(w, 'store'), logger).list(), [], 'nothing imported');
    }
  });

  it('with admins configured, a non-admin gets 403 and an admin imports', async () => {
    const w = work('admins');
    const { archive } = await tinyArchive(w);
    const admin = generateKeyPair();
    const app = await server([admin.address.toUpperCase().replace('0X', '0x')], w);
    try {
      const stranger = await importAs(app, generateKeyPair(), archive);
      assert.equal(stranger.status, 403);
      assert.equal(stranger.body.error?.code, 'AUTH_FORBIDDEN');
      const ok = await importAs(app, admin, archive);
      assert.equal(ok.status, 201);
      assert.equal((await new ImageStore(join(w, 'store'), logger).list()).length, 1);
    } finally {
      await app.close();
    }
  });
});

describe('state and cache directories are ours, 0700 (or 0711 where containers must pass), checked at start', () => {
  const unsafe = (pattern: RegExp) => (e: Error & { code?: string }) =>
    e.code === 'CONFIG_INVALID' && /^Cannot use .* for the runtime's state/.test(e.message) && pattern.test(e.message);

  /** A directory another local user made first (anyone can in /var/tmp), or one anyone may write. */
  function planted(how: 'other-owner' | 'world-writable' | 'symlink'): string {
    const w = work('planted');
    const d = join(w, 'dir');
    if (how === 'symlink') {
      mkdirSync(join(w, 'elsewhere'));
      symlinkSync(join(w, 'elsewhere'), d);
    } else {
      mkdirSync(d);
      if (how === 'other-owner') chownSync(d, 1000, 1000);
      else chmodSync(d, 0o777);
    }
    return d;
  }

  for (const how of ['other-owner', 'world-writable', 'symlink'] as const) {
    it(
      `the image store refuses a store directory that is ${how}`,
      { skip: process.getuid?.() !== 0 && 'needs root (chown)' },
      async () => {
        const d = planted(how);
        const { archive } = await tinyArchive(work('src'));
        await assert.rejects(
          new ImageStore(d, logger).import(archive),
          unsafe(/owned by uid 1000|writable by everyone|symbolic link/),
        );
        assert.deepEqual(readdirSync(d), [], 'nothing written into it');
      },
    );
  }

  it(
    'the JS runtime image cache refuses a cache directory another user made first',
    { skip: process.getuid?.() !== 0 && 'needs root (chown)' },
    async () => {
      const d = planted('other-owner');
      await assert.rejects(buildJsRuntimeImage(d), unsafe(/owned by uid 1000/));
      assert.deepEqual(readdirSync(d), [], 'nothing written into it');
    },
  );

  it('creates missing directories 0700 and keeps a safe existing one', async () => {
    const w = work('fresh');
    const d = await ownedDir(join(w, 'a', 'b'));
    assert.equal(statSync(d).mode & 0o7777, 0o700);
    assert.equal(statSync(join(w, 'a')).mode & 0o7777, 0o700, 'missing parents too');
    chmodSync(d, 0o755);
    assert.equal(await ownedDir(d), d, 'an existing directory of ours that only we may write is fine');
  });
});

describe('a checkpoint (process state and workspace) is shown only to its owner and admins', () => {
  const owner = generateKeyPair();
  const admin = generateKeyPair();
  const SECRET = '{"format":"formation-runtime-checkpoint/1","state":"{\\"apiKey\\":\\"hunter2\\"}"}';
  async function server() {
    const app = await createApiServer({ name: 'runtime-test', logger });
    const manager = {
      process: (pid: string) => ({ id: pid, owner: owner.address }),
      checkpointData: async () => SECRET,
    } as unknown as ProcessManager;
    registerRuntimeRoutes(app, {
      manager,
      images: new ImageStore(join(work('cp'), 'store'), logger),
      cacheDir: '/nonexistent',
      nonces: new NonceCache(),
      node: { id: '0xnode', name: 'n', desc: '', url: 'http://127.0.0.1' },
      admins: [admin.address],
    });
    await app.ready();
    return app;
  }
  const url = `/processes/p1/checkpoints/${'a'.repeat(64)}`;
  const get = async (app: Awaited<ReturnType<typeof server>>, key?: KeyPair) => {
    const res = await app.inject({
      method: 'GET',
      url,
      headers: key ? signRequest(key, { method: 'GET', path: url, audience: app.formIdentity.id }) : {},
    });
    return { status: res.statusCode, body: res.body };
  };

  it('refuses an unsigned or stranger request; the owner and admins read it', async () => {
    const app = await server();
    try {
      const anon = await get(app);
      assert.equal(anon.status, 401, 'unsigned: refused');
      assert.ok(!anon.body.includes('hunter2'));
      const stranger = await get(app, generateKeyPair());
      assert.equal(stranger.status, 403);
      assert.ok(!stranger.body.includes('hunter2'));
      assert.equal((await get(app, owner)).body, SECRET);
      assert.equal((await get(app, admin)).body, SECRET);
    } finally {
      await app.close();
    }
  });
});
