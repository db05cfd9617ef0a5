import { FORMFILE_DEFAULTS } from '@formation/interface';

/** The canonical instruction names. */
export type InstructionName =
  | 'NAME'
  | 'USER'
  | 'VCPU'
  | 'MEM'
  | 'DISK'
  | 'COPY'
  | 'INSTALL'
  | 'RUN'
  | 'ENV'
  | 'EXPOSE'
  | 'WORKDIR'
  | 'ENTRYPOINT'
  | 'NOCOPY'
  | 'GPU'
  | 'HEALTHCHECK'
  | 'HTTPS'
  | 'AUTOSTOP';

export interface InstructionInfo {
  name: InstructionName;
  /** Other spellings accepted for compatibility with the original Formation parser. */
  aliases: readonly string[];
  syntax: string;
  /** May appear at most once. */
  once: boolean;
  /** What applies when the Formfile omits it. */
  default: string;
}

/** Every instruction, in the order the README documents them. */
export const INSTRUCTIONS: readonly InstructionInfo[] = [
  { name: 'NAME', aliases: [], syntax: 'NAME <dns-label>', once: true, default: '(required)' },
  {
    name: 'USER',
    aliases: [],
    syntax: 'USER username:<name> [passwd:<pw>] [sudo:<bool>] [ssh_authorized_keys:"<key>,<key>"] ...',
    once: false,
    default: 'no users',
  },
  { name: 'VCPU', aliases: ['CPU', 'CORES'], syntax: 'VCPU <1-128>', once: true, default: `${FORMFILE_DEFAULTS.vcpu}` },
  {
    name: 'MEM',
    aliases: ['MEMORY', 'MBS'],
    syntax: 'MEM <512-256000> (MiB)',
    once: true,
    default: `${FORMFILE_DEFAULTS.memMiB} MiB`,
  },
  {
    name: 'DISK',
    aliases: ['STORAGE'],
    syntax: 'DISK <5-16384> (GiB)',
    once: true,
    default: `${FORMFILE_DEFAULTS.diskGiB} GiB`,
  },
  {
    name: 'COPY',
    aliases: [],
    syntax: 'COPY <src>... [<dst>]',
    once: false,
    default: 'whole build directory (minus the Formfile) to WORKDIR, unless NOCOPY',
  },
  { name: 'INSTALL', aliases: [], syntax: 'INSTALL <package>...', once: false, default: 'nothing' },
  { name: 'RUN', aliases: [], syntax: 'RUN <command> | RUN ["prog", "arg"]', once: false, default: 'nothing' },
  {
    name: 'ENV',
    aliases: [],
    syntax: 'ENV [--scope=system|user:<name>|service:<name>] KEY=value...',
    once: false,
    default: 'none; scope defaults to system',
  },
  { name: 'EXPOSE', aliases: [], syntax: 'EXPOSE <port>[/tcp]...', once: false, default: 'no ports' },
  { name: 'WORKDIR', aliases: [], syntax: 'WORKDIR </absolute/path>', once: true, default: FORMFILE_DEFAULTS.workdir },
  {
    name: 'ENTRYPOINT',
    aliases: [],
    syntax: 'ENTRYPOINT ["prog", "arg"] | ENTRYPOINT <shell command>',
    once: true,
    default: 'none (the instance runs only its system services)',
  },
  { name: 'NOCOPY', aliases: [], syntax: 'NOCOPY (before ENTRYPOINT)', once: true, default: 'off' },
  { name: 'GPU', aliases: [], syntax: 'GPU [<bool>]', once: true, default: 'off' },
  {
    name: 'HEALTHCHECK',
    aliases: [],
    syntax:
      'HEALTHCHECK [--interval=10s] [--timeout=3s] [--retries=3] [--start-period=30s] ' +
      '(CMD <command> | CMD ["prog", "arg"] | HTTP <port> [<path>] | TCP <port> | NONE)',
    once: true,
    default: 'none (a running replica counts as healthy)',
  },
  {
    name: 'HTTPS',
    aliases: [],
    syntax:
      'HTTPS <app port> [TERMINATE=guest|ingress] (guest, the default: the guest gets an ACME certificate for its ' +
      'names, serves TLS on 443, forwards to the port; ingress: the ingress nodes hold the certificate and see the traffic)',
    once: true,
    default: 'off (TLS on 443 only if the app serves it itself)',
  },
  {
    name: 'AUTOSTOP',
    aliases: [],
    syntax:
      'AUTOSTOP <idle time: 15m, 2h, 1d> | AUTOSTOP off (suspend a replica idle that long; its next connection wakes it)',
    once: true,
    default: 'off (replicas keep running; form manage autostop changes it)',
  },
];

const BY_WORD = new Map<string, InstructionName>();
for (const i of INSTRUCTIONS) {
  BY_WORD.set(i.name, i.name);
  for (const a of i.aliases) BY_WORD.set(a, i.name);
}

/** Every accepted spelling (upper case). */
export const INSTRUCTION_WORDS: readonly string[] = [...BY_WORD.keys()];

/** The instruction a word names (case-insensitive), or undefined. */
export function lookupInstruction(word: string): InstructionName | undefined {
  return BY_WORD.get(word.toUpperCase());
}

/** Bounds for the numeric instructions, with the reason shown in errors. */
export const BOUNDS = {
  VCPU: { min: 1, max: 128, unit: 'vCPUs', why: 'a VM needs at least one vCPU and a node gives one VM at most 128' },
  MEM: {
    min: 512,
    max: 256_000,
    unit: 'MiB',
    why: 'a Debian guest needs at least 512 MiB to boot, and 256000 MiB (250 GiB) is the most one VM may ask for',
  },
  DISK: {
    min: 5,
    max: 16_384,
    unit: 'GiB',
    why: 'the Debian base image with room for packages needs at least 5 GiB, and 16384 GiB (16 TiB) is the most one VM may ask for',
  },
} as const;

/** USER fields and their kinds. */
export const USER_FIELDS = [
  'username',
  'passwd',
  'sudo',
  'ssh_authorized_keys',
  'ssh_pwauth',
  'lock_passwd',
  'shell',
  'disable_root',
  'chpasswd_expire',
  'groups',
] as const;
export type UserField = (typeof USER_FIELDS)[number];

/** Defaults for USER fields the Formfile omits. */
export const USER_DEFAULTS = {
  sudo: false,
  sshPwauth: false,
  lockPasswd: false,
  shell: FORMFILE_DEFAULTS.shell,
  disableRoot: true,
  chpasswdExpire: false,
} as const;
