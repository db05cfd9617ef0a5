// Types for lua-process.mjs (plain JavaScript, as it also runs inside the runtime container).
import type { Result } from '../types.ts';

export declare const LUA_CHECKPOINT_FORMAT: 'formation-lua-process/1';

export declare class LuaProcessError extends Error {
  status: number;
  constructor(message: string, status?: number);
}

export interface AoMessage {
  Id?: string;
  From?: string;
  Owner?: string;
  Target?: string;
  Timestamp?: number;
  Data?: string;
  Tags?: Array<{ name: string; value: string }>;
  [field: string]: unknown;
}

export declare class LuaProcess {
  readonly info: { pid: string; owner: string; moduleId: string };
  static spawn(o: {
    wasmPath?: string;
    pid: string;
    owner: string;
    moduleId?: string;
    tags?: Array<{ name: string; value: string }>;
    moduleTags?: Array<{ name: string; value: string }>;
    code?: string;
    timeoutMs?: number;
  }): Promise<LuaProcess>;
  static restore(state: string, o?: { wasmPath?: string; timeoutMs?: number }): Promise<LuaProcess>;
  apply(msg: AoMessage, mode?: 'apply' | 'replay' | 'dry-run'): Result;
  checkpoint(): string;
  memory(): Uint8Array;
}
