/** A labelled replica-count field, kept within what the state accepts (1–16). */
export function ReplicasInput({
  value,
  onChange,
  size,
}: {
  value: number;
  onChange: (n: number) => void;
  size?: number;
}) {
  return (
    <label>
      Replicas{' '}
      <input
        type="number"
        min={1}
        max={16}
        value={value}
        onChange={(e) => onChange(Math.max(1, Math.min(16, Number(e.target.value) || 1)))}
        size={size}
      />
    </label>
  );
}
