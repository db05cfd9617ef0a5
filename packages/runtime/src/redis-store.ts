import { FormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import { Redis } from 'ioredis';
import type { LogEntry, ProcessRecord, RuntimeStore } from './runtime-store.ts';
import type { Result, RuntimeModule } from './types.ts';

const P = 'formrt:';

/**
 * The runtime's registry in Redis (seed 004: VMDocker keeps its node state in Redis): modules,
 * processes and each process's message log and results, all under keys starting `formrt:`. Every
 * write is idempotent (HSET of a fixed key), so commands ioredis re-sends after Redis restarts do no
 * harm; commands issued while Redis is down wait for it to come back instead of failing.
 *
 * @example
 * const store = new RedisRuntimeStore('redis://127.0.0.1:6379/0', logger);
 * await store.connect(); // UNAVAILABLE with a hint when Redis does not answer
 * await store.listProcesses();
 * await store.close();
 */
export class RedisRuntimeStore implements RuntimeStore {
  readonly redis: Redis;
  private readonly log: Logger;

  constructor(url: string, logger: Logger) {
    this.log = logger.child({ component: 'runtime-store' });
    this.redis = new Redis(url, {
      lazyConnect: true,
      maxRetriesPerRequest: null,
      retryStrategy: (n) => Math.min(50 * n, 500),
      enableOfflineQueue: true,
    });
    this.redis.on('error', (err) => this.log.warn({ err: err.message }, 'redis connection problem'));
  }

  async connect(timeoutMs = 10_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.redis.connect(),
        new Promise((_, rej) => {
          timer = setTimeout(() => rej(new Error(`no connection within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      await this.redis.ping();
      clearTimeout(timer);
    } catch (err) {
      clearTimeout(timer);
      this.redis.disconnect();
      throw new FormError(
        'UNAVAILABLE',
        `Cannot connect to Redis at ${this.redis.options.host}:${this.redis.options.port}: ${(err as Error).message}`,
        {
          hint: 'Start redis-server and check redisURL in the runtime config.',
        },
      );
    }
  }

  async close(): Promise<void> {
    try {
      await this.redis.quit();
    } catch {
      this.redis.disconnect();
    }
  }

  async putModule(mod: RuntimeModule): Promise<void> {
    await this.redis.hset(`${P}modules`, mod.id, JSON.stringify(mod));
  }

  async listModules(): Promise<RuntimeModule[]> {
    return Object.values(await this.redis.hgetall(`${P}modules`)).map((v) => JSON.parse(v) as RuntimeModule);
  }

  async putProcess(rec: ProcessRecord): Promise<void> {
    await this.redis.hset(`${P}processes`, rec.id, JSON.stringify(rec));
  }

  async deleteProcess(id: string): Promise<void> {
    await this.redis.hdel(`${P}processes`, id);
    await this.redis.del(`${P}log:${id}`, `${P}results:${id}`, `${P}ids:${id}`);
  }

  async listProcesses(): Promise<ProcessRecord[]> {
    return Object.values(await this.redis.hgetall(`${P}processes`)).map((v) => JSON.parse(v) as ProcessRecord);
  }

  /** Write-ahead: the message is logged before it is applied. */
  async putMessage(pid: string, entry: LogEntry): Promise<void> {
    await this.redis
      .multi()
      .hset(`${P}log:${pid}`, String(entry.meta.sequence), JSON.stringify(entry))
      .hset(`${P}ids:${pid}`, entry.meta.itemId, String(entry.meta.sequence))
      .exec();
  }

  async putResult(pid: string, sequence: number, result: Result): Promise<void> {
    await this.redis.hset(`${P}results:${pid}`, String(sequence), JSON.stringify(result));
  }

  /** Highest logged sequence (messages are numbered 1, 2, 3, … without gaps). */
  async lastSequence(pid: string): Promise<number> {
    return this.redis.hlen(`${P}log:${pid}`);
  }

  async sequenceOf(pid: string, itemId: string): Promise<number | undefined> {
    const v = await this.redis.hget(`${P}ids:${pid}`, itemId);
    return v === null ? undefined : Number(v);
  }

  async entries(pid: string, fromSeq: number, toSeq: number): Promise<LogEntry[]> {
    if (toSeq < fromSeq) return [];
    const fields = Array.from({ length: toSeq - fromSeq + 1 }, (_, i) => String(fromSeq + i));
    const vals = await this.redis.hmget(`${P}log:${pid}`, ...fields);
    return vals.filter((v): v is string => v !== null).map((v) => JSON.parse(v) as LogEntry);
  }

  async results(pid: string, fromSeq: number, toSeq: number): Promise<Array<Result | undefined>> {
    if (toSeq < fromSeq) return [];
    const fields = Array.from({ length: toSeq - fromSeq + 1 }, (_, i) => String(fromSeq + i));
    const vals = await this.redis.hmget(`${P}results:${pid}`, ...fields);
    return vals.map((v) => (v === null ? undefined : (JSON.parse(v) as Result)));
  }
}
