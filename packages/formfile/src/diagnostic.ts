import type { ErrorCode } from '@formation/interface';

/**
 * One problem found in a Formfile. `line` and `column` are 1-based and point at the offending token;
 * they are absent only for whole-file problems (no NAME, file too large).
 */
export interface FormfileDiagnostic {
  code: FormfileErrorCode;
  message: string;
  line?: number;
  column?: number;
}

/** The FORMFILE_* subset of the error codes. */
export type FormfileErrorCode = Extract<ErrorCode, `FORMFILE_${string}`>;

/** A position in the source, 1-based. */
export interface SourcePosition {
  line: number;
  column: number;
}

/** Sort diagnostics by position; whole-file diagnostics come last. Stable for equal positions. */
export function sortDiagnostics(list: FormfileDiagnostic[]): FormfileDiagnostic[] {
  return list
    .map((d, i) => ({ d, i }))
    .sort((a, b) => {
      const la = a.d.line ?? Number.MAX_SAFE_INTEGER;
      const lb = b.d.line ?? Number.MAX_SAFE_INTEGER;
      if (la !== lb) return la - lb;
      const ca = a.d.column ?? 0;
      const cb = b.d.column ?? 0;
      return ca !== cb ? ca - cb : a.i - b.i;
    })
    .map((x) => x.d);
}
