/**
 * @formation/formfile: the Formfile lexer, parser and validator.
 *
 * @example
 * const { text, dir } = await loadFormfile('examples/hello-server');
 * const parsed = parseFormfile(text);
 * const errors = [...parsed.errors, ...(await validateBuildContext(parsed, dir, parsed.copyPositions))];
 * if (errors.length === 0) build(parsed.spec!, normalizeFormfile(parsed.spec!));
 */
export { validateBuildContext } from './context.ts';
export type { FormfileDiagnostic, FormfileErrorCode, SourcePosition } from './diagnostic.ts';
export { formatDiagnostics, redactSourceLine } from './format.ts';
export { HEALTHCHECK_KINDS, HEALTHCHECK_OPTIONS, MAX_HEALTH_PATH, parseDuration } from './healthcheck.ts';
export {
  BOUNDS,
  INSTRUCTIONS,
  type InstructionInfo,
  type InstructionName,
  USER_DEFAULTS,
  USER_FIELDS,
} from './instructions.ts';
export { type LoadedFormfile, loadFormfile } from './load.ts';
export { normalizeFormfile, REDACTED, redactFormfile } from './normalize.ts';
export { MAX_DIAGNOSTICS, MAX_FORMFILE_BYTES, type ParseResult, parseFormfile } from './parser.ts';
