import type { DeployStatus } from '../../api-types.ts';

export function Status({ status, reason }: { status: DeployStatus; reason: string | null }) {
  const text = status === 'FAILURE' ? `FAILURE { reason: ${reason ?? 'unknown'} }` : status;
  return <span className={`status status-${status.toLowerCase()}`}>{text}</span>;
}
