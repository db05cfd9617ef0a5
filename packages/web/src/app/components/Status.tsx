import type { DeployStatus } from '@formation/interface/web-api';

export function Status({ status, reason }: { status: DeployStatus; reason: string | null }) {
  // PENDING carries a reason when it cannot be placed yet (no node with a usable GPU), as the CLI prints it.
  const text =
    status === 'FAILURE'
      ? `FAILURE { reason: ${reason ?? 'unknown'} }`
      : status === 'PENDING' && reason
        ? `PENDING { reason: ${reason} }`
        : status;
  return <span className={`status status-${status.toLowerCase()}`}>{text}</span>;
}
