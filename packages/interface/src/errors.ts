/**
 * Every error Formation raises on purpose is a FormError: a stable `code`, a message for people
 * ("Cannot X: Y"), an optional hint (what to do next) and whose fault it is.
 *
 * @example
 * throw new FormError('VM_NOT_FOUND', 'Cannot stop VM abc: no such VM', { hint: 'List VMs with `form manage list`.' });
 */

/** Who caused an error: `user` errors are bad input (4xx), `system` errors are ours or the host's (5xx). */
export type Fault = 'user' | 'system';

/** The closed set of error codes, with the HTTP status and fault each one maps to. */
export const ERROR_CODES = {
  // generic
  INTERNAL: { status: 500, fault: 'system' },
  BAD_REQUEST: { status: 400, fault: 'user' },
  NOT_FOUND: { status: 404, fault: 'user' },
  CONFLICT: { status: 409, fault: 'user' },
  CONFIG_INVALID: { status: 400, fault: 'user' },
  UNAVAILABLE: { status: 503, fault: 'system' },
  TIMEOUT: { status: 504, fault: 'system' },
  DISK_FULL: { status: 507, fault: 'system' },
  HOST_UNSUPPORTED: { status: 501, fault: 'system' },
  // CLI
  CLI_USAGE: { status: 400, fault: 'user' },
  CLI_NO_NODE: { status: 503, fault: 'user' },
  // Formfile
  FORMFILE_NOT_FOUND: { status: 404, fault: 'user' },
  FORMFILE_UNREADABLE: { status: 400, fault: 'user' },
  FORMFILE_TOO_LARGE: { status: 413, fault: 'user' },
  FORMFILE_BINARY: { status: 400, fault: 'user' },
  FORMFILE_SYNTAX: { status: 400, fault: 'user' },
  FORMFILE_UNKNOWN_INSTRUCTION: { status: 400, fault: 'user' },
  FORMFILE_MISSING_ARGUMENT: { status: 400, fault: 'user' },
  FORMFILE_BAD_VALUE: { status: 400, fault: 'user' },
  FORMFILE_OUT_OF_RANGE: { status: 400, fault: 'user' },
  FORMFILE_DUPLICATE: { status: 400, fault: 'user' },
  FORMFILE_MISSING_NAME: { status: 400, fault: 'user' },
  FORMFILE_ORDER: { status: 400, fault: 'user' },
  FORMFILE_BAD_PATH: { status: 400, fault: 'user' },
  FORMFILE_BAD_USER: { status: 400, fault: 'user' },
  // identity / auth
  KEY_NOT_FOUND: { status: 401, fault: 'user' },
  KEY_EXISTS: { status: 409, fault: 'user' },
  KEY_INVALID: { status: 400, fault: 'user' },
  AUTH_MISSING: { status: 401, fault: 'user' },
  AUTH_BAD_SIGNATURE: { status: 401, fault: 'user' },
  AUTH_EXPIRED: { status: 401, fault: 'user' },
  AUTH_REPLAYED: { status: 401, fault: 'user' },
  AUTH_FORBIDDEN: { status: 403, fault: 'user' },
  /** A signed request made for another node or service (its audience is not this one). */
  AUTH_WRONG_AUDIENCE: { status: 421, fault: 'user' },
  /** Too many requests from one key (or peer) in a window. */
  RATE_LIMITED: { status: 429, fault: 'user' },
  // pack
  PACK_NOT_FOUND: { status: 404, fault: 'user' },
  PACK_BUILD_FAILED: { status: 422, fault: 'user' },
  PACK_BAD_ARCHIVE: { status: 400, fault: 'user' },
  PACK_UNKNOWN_PACKAGE: { status: 422, fault: 'user' },
  PACK_DISK_TOO_SMALL: { status: 422, fault: 'user' },
  PACK_BUILD_TIMEOUT: { status: 422, fault: 'user' },
  PACK_QUEUE_FULL: { status: 429, fault: 'user' },
  PACK_UNSAFE_DIR: { status: 500, fault: 'system' },
  PACK_BAD_MANIFEST: { status: 422, fault: 'user' },
  PACK_BAD_ARTIFACT: { status: 422, fault: 'user' },
  // vmm
  VM_NOT_FOUND: { status: 404, fault: 'user' },
  VM_BAD_STATE: { status: 409, fault: 'user' },
  VM_BUSY: { status: 409, fault: 'user' },
  VM_NO_CAPACITY: { status: 409, fault: 'user' },
  VM_IMAGE_INVALID: { status: 422, fault: 'user' },
  VM_IMAGE_UNSAFE: { status: 422, fault: 'user' },
  VM_BAD_ARGUMENT: { status: 400, fault: 'user' },
  VM_HYPERVISOR: { status: 500, fault: 'system' },
  VM_GPU_UNAVAILABLE: { status: 409, fault: 'system' },
  QMP_ERROR: { status: 500, fault: 'system' },
  // attestation
  ATTEST_FAILED: { status: 422, fault: 'user' },
  /** A served TLS certificate whose key is not the one the attested guest reported (issue 19). */
  TLS_KEY_NOT_ATTESTED: { status: 422, fault: 'user' },
  ATTEST_UNAVAILABLE: { status: 503, fault: 'system' },
  SECRET_REFUSED: { status: 403, fault: 'user' },
  // state
  STATE_OP_INVALID: { status: 422, fault: 'user' },
  STATE_OP_FORBIDDEN: { status: 403, fault: 'user' },
  STATE_OP_NOT_FOUND: { status: 404, fault: 'user' },
  // compute runtime
  RUNTIME_MODULE_INVALID: { status: 422, fault: 'user' },
  RUNTIME_MODULE_NOT_FOUND: { status: 404, fault: 'user' },
  RUNTIME_IMAGE_INVALID: { status: 422, fault: 'user' },
  RUNTIME_IMAGE_NOT_FOUND: { status: 404, fault: 'user' },
  RUNTIME_PROCESS_NOT_FOUND: { status: 404, fault: 'user' },
  RUNTIME_CHECKPOINT_INVALID: { status: 422, fault: 'user' },
  RUNTIME_CONTAINER: { status: 500, fault: 'system' },
  // instances / network
  INSTANCE_NOT_FOUND: { status: 404, fault: 'user' },
  NET_ERROR: { status: 500, fault: 'system' },
  NET_BAD_PEER: { status: 422, fault: 'user' },
} as const satisfies Record<string, { status: number; fault: Fault }>;

/** A stable, machine-readable error code. */
export type ErrorCode = keyof typeof ERROR_CODES;

export interface FormErrorOptions {
  /** What the person should do next. */
  hint?: string;
  /** Structured details (numbers, names) safe to show and to send over the API. */
  details?: Record<string, unknown>;
  /** The underlying error, kept for logs. */
  cause?: unknown;
}

export class FormError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: FormErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FormError';
    this.code = code;
    this.hint = options.hint;
    this.details = options.details;
  }

  /** HTTP status this error maps to. */
  get status(): number {
    return ERROR_CODES[this.code].status;
  }

  /** Whether the user (bad input) or the system caused it. */
  get fault(): Fault {
    return ERROR_CODES[this.code].fault;
  }

  /** The API wire shape: `{ error: { code, message, hint?, details? } }`. */
  toJSON(): ErrorBody {
    const error: ErrorBody['error'] = { code: this.code, message: this.message };
    if (this.hint !== undefined) error.hint = this.hint;
    if (this.details !== undefined) error.details = this.details;
    return { error };
  }
}

/** The JSON body of every API error response. */
export interface ErrorBody {
  error: { code: string; message: string; hint?: string; details?: Record<string, unknown> };
}

/** True when `value` is a FormError (also across module copies). */
export function isFormError(value: unknown): value is FormError {
  return value instanceof FormError || (value instanceof Error && value.name === 'FormError' && 'code' in value);
}

/** Rebuild a FormError from an API error body (used by HTTP clients). */
export function formErrorFromBody(body: unknown, fallbackStatus: number): FormError {
  const err = (body as Partial<ErrorBody> | undefined)?.error;
  if (err && typeof err.code === 'string' && typeof err.message === 'string') {
    const code = (err.code in ERROR_CODES ? err.code : 'INTERNAL') as ErrorCode;
    return new FormError(code, err.message, { hint: err.hint, details: err.details });
  }
  return new FormError(
    fallbackStatus >= 500 ? 'INTERNAL' : 'BAD_REQUEST',
    `Request failed with HTTP ${fallbackStatus}`,
  );
}
