import { type Static, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { FormError } from './errors.ts';
import { FORMPACK_ARTIFACT_FILES, FORMPACK_LIMITS, type FormpackManifest } from './formpack.ts';

// The Formpack manifest's schema, apart from formpack.ts so that importing the contract types (the CLI,
// the browser, @formation/state/client) does not load TypeBox: `@formation/interface/formpack-schema`.

const strict = { additionalProperties: false };
const Int = (minimum: number, maximum: number) => Type.Integer({ minimum, maximum });
const Hex64 = Type.String({ pattern: '^[0-9a-f]{64}$' });
const Label = Type.String({ pattern: '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' });
/** Printable text without control characters (no newlines, no NUL). */
const Line = (maxLength: number) => Type.String({ maxLength, pattern: '^[^\\u0000-\\u001f\\u007f]*$' });
const AbsPath = Type.String({ maxLength: 4096, pattern: '^/[^\\u0000-\\u001f\\u007f]*$' });
const Artifact = <F extends string>(file: F, maxBytes: number) =>
  Type.Object(
    { file: Type.Literal(file), sha256: Hex64, bytes: Type.Integer({ minimum: 1, maximum: maxBytes }) },
    strict,
  );

const UserSchema = Type.Object(
  {
    username: Type.String({ pattern: '^[a-z_][a-z0-9_-]{0,31}$' }),
    passwd: Type.Union([Line(1024), Type.Null()]),
    sudo: Type.Boolean(),
    sshAuthorizedKeys: Type.Array(Line(16 * 1024), { maxItems: 256 }),
    sshPwauth: Type.Boolean(),
    lockPasswd: Type.Boolean(),
    shell: AbsPath,
    disableRoot: Type.Boolean(),
    chpasswdExpire: Type.Boolean(),
    groups: Type.Array(Type.String({ pattern: '^[a-z_][a-z0-9_-]{0,31}$' }), { maxItems: 64 }),
  },
  strict,
);

const EnvScopeSchema = Type.Union([
  Type.Object({ kind: Type.Literal('system') }, strict),
  Type.Object({ kind: Type.Literal('user'), name: Line(64) }, strict),
  Type.Object({ kind: Type.Literal('service'), name: Line(256) }, strict),
]);

/** `HEALTHCHECK`, bounds as the Formfile parser checks them (a peer's manifest gets no more room). */
export const HealthcheckSchema = Type.Object(
  {
    test: Type.Union([
      Type.Object(
        {
          type: Type.Literal('http'),
          port: Int(1, 65535),
          // The request line the prober writes: an origin-form path of URI characters only (no CR/LF, no space).
          path: Type.String({ maxLength: 1024, pattern: "^/[A-Za-z0-9._~!$&'()*+,;=:@/%?-]*$" }),
        },
        strict,
      ),
      Type.Object({ type: Type.Literal('tcp'), port: Int(1, 65535) }, strict),
      Type.Object(
        {
          type: Type.Literal('cmd'),
          command: Type.Union([
            Type.Object(
              {
                form: Type.Literal('exec'),
                argv: Type.Array(Type.String({ maxLength: 64 * 1024 }), { minItems: 1, maxItems: 1024 }),
              },
              strict,
            ),
            Type.Object({ form: Type.Literal('shell'), command: Type.String({ maxLength: 64 * 1024 }) }, strict),
          ]),
        },
        strict,
      ),
    ]),
    intervalMs: Int(1000, 3_600_000),
    timeoutMs: Int(1000, 300_000),
    retries: Int(1, 100),
    startPeriodMs: Int(0, 3_600_000),
  },
  strict,
);

/** The normalized Formfile as a manifest carries it (passwords redacted by the builder). */
export const FormfileSpecSchema = Type.Object(
  {
    name: Label,
    users: Type.Array(UserSchema, { maxItems: 64 }),
    vcpu: Int(1, 1024),
    memMiB: Int(64, 16 * 1024 * 1024),
    diskGiB: Int(1, 16_384),
    copy: Type.Array(Type.Object({ src: Line(4096), dst: Line(4096) }, strict), { maxItems: 1024 }),
    install: Type.Array(Type.String({ pattern: '^[a-z0-9][a-z0-9+.-]+(=[0-9][A-Za-z0-9.+~:-]*)?$', maxLength: 256 }), {
      maxItems: 1024,
    }),
    run: Type.Array(Type.String({ maxLength: 64 * 1024 }), { maxItems: 1024 }),
    env: Type.Array(
      Type.Object(
        {
          key: Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]{0,255}$' }),
          value: Type.String({ maxLength: 64 * 1024 }),
          scope: EnvScopeSchema,
        },
        strict,
      ),
      { maxItems: 1024 },
    ),
    /** TCP ports: integers only (they end up in QEMU's hostfwd=). */
    expose: Type.Array(Int(1, 65535), { maxItems: 64, uniqueItems: true }),
    workdir: AbsPath,
    entrypoint: Type.Union([
      Type.Object(
        {
          form: Type.Literal('exec'),
          argv: Type.Array(Type.String({ maxLength: 64 * 1024 }), { maxItems: 1024 }),
        },
        strict,
      ),
      Type.Object({ form: Type.Literal('shell'), command: Type.String({ maxLength: 64 * 1024 }) }, strict),
      Type.Null(),
    ]),
    noCopy: Type.Boolean(),
    gpu: Type.Boolean(),
    healthcheck: Type.Optional(HealthcheckSchema),
    https: Type.Optional(
      Type.Object({ port: Int(1, 65535), terminate: Type.Optional(Type.Literal('ingress')) }, strict),
    ),
    autostopMinutes: Type.Optional(Int(0, 10_080)),
  },
  strict,
);

/** The one schema of a Formpack manifest: what the builder writes, what the VMM reads, what a peer must serve. */
export const FormpackManifestSchema = Type.Object(
  {
    id: Hex64,
    name: Label,
    owner: Type.String({ pattern: '^0x[0-9a-f]{40}$' }),
    createdAt: Type.String({ maxLength: 40, pattern: '^\\d{4}-\\d{2}-\\d{2}T[0-9:.]+Z$' }),
    formfile: FormfileSpecSchema,
    resources: Type.Object({ vcpu: Int(1, 1024), memMiB: Int(64, 16 * 1024 * 1024), diskGiB: Int(1, 16_384) }, strict),
    cmdline: Line(4096),
    init: AbsPath,
    artifacts: Type.Object(
      {
        disk: Artifact(FORMPACK_ARTIFACT_FILES.disk, FORMPACK_LIMITS.artifactBytes.disk),
        kernel: Artifact(FORMPACK_ARTIFACT_FILES.kernel, FORMPACK_LIMITS.artifactBytes.kernel),
        initramfs: Artifact(FORMPACK_ARTIFACT_FILES.initramfs, FORMPACK_LIMITS.artifactBytes.initramfs),
      },
      strict,
    ),
    guest: Type.Object(
      {
        agent: Type.Literal('qemu-ga'),
        agentChannel: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' }),
        sshd: Type.Union([Type.Literal('dropbear'), Type.Literal('openssh')]),
      },
      strict,
    ),
  },
  strict,
);

// The schema and the interface describe the same thing: a mismatch is a compile error here.
const _sameShape: FormpackManifest = {} as Static<typeof FormpackManifestSchema>;
void _sameShape;

const checkManifest = TypeCompiler.Compile(FormpackManifestSchema);

/**
 * Validate a manifest from anywhere (a peer, a file, an archive) against `FormpackManifestSchema`,
 * plus what one schema cannot say (the disk file fits the disk size). Throws `PACK_BAD_MANIFEST`
 * naming the first problems.
 *
 * @example
 * const m = parseFormpackManifest(await res.json(), `manifest from ${peer}`);
 */
export function parseFormpackManifest(value: unknown, from = 'manifest'): FormpackManifest {
  if (!checkManifest.Check(value)) {
    const problems = [...checkManifest.Errors(value)]
      .slice(0, 3)
      .map((e) => `${e.path || '/'} ${e.message}`)
      .join('; ');
    throw new FormError('PACK_BAD_MANIFEST', `Cannot use ${from}: it is not a valid Formpack manifest (${problems})`, {
      hint: 'Rebuild the Formpack with this version of Formation; a node serving this manifest is not trustworthy.',
    });
  }
  const m = value as FormpackManifest;
  const maxDisk = m.resources.diskGiB * 2 ** 30 + FORMPACK_LIMITS.diskOverheadBytes;
  if (m.artifacts.disk.bytes > maxDisk) {
    throw new FormError(
      'PACK_BAD_MANIFEST',
      `Cannot use ${from}: its disk file (${m.artifacts.disk.bytes} bytes) is larger than a ${m.resources.diskGiB} GiB disk can be`,
    );
  }
  return m;
}
