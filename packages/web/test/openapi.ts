/** Does an OpenAPI document have `method path` with these top-level fields in its 200 response? */
export function missingInOpenApi(
  doc: unknown,
  call: { method: string; path: string; fields: readonly string[] },
): string | undefined {
  const paths = (doc as { paths?: Record<string, Record<string, unknown>> }).paths ?? {};
  const op = paths[call.path]?.[call.method] as
    | { responses?: Record<string, { content?: Record<string, { schema?: { properties?: object } }> }> }
    | undefined;
  if (!op) return `${call.method.toUpperCase()} ${call.path} is not in the document`;
  const props = op.responses?.['200']?.content?.['application/json']?.schema?.properties ?? {};
  const missing = call.fields.filter((f) => !(f in props));
  return missing.length > 0
    ? `${call.method.toUpperCase()} ${call.path} lacks fields ${missing.join(', ')}`
    : undefined;
}
