import { Type } from '@sinclair/typebox';

// JSON schemas shared by several routes of the pack API (validation and the OpenAPI document).

/** `BuildInfo` (src/build-jobs.ts) as the API sends it. */
export const BuildInfoSchema = Type.Object({
  buildId: Type.String(),
  id: Type.String(),
  name: Type.String(),
  owner: Type.String(),
  status: Type.Union([Type.Literal('queued'), Type.Literal('running'), Type.Literal('done'), Type.Literal('failed')]),
  step: Type.Union([Type.String(), Type.Null()]),
  cached: Type.Boolean(),
  startedAt: Type.String(),
  finishedAt: Type.Union([Type.String(), Type.Null()]),
  error: Type.Union([
    Type.Null(),
    Type.Object({ code: Type.String(), message: Type.String(), hint: Type.Optional(Type.String()) }),
  ]),
});

/** A `FormpackManifest`: the fields every client relies on; the rest passes through. */
export const ManifestSchema = Type.Object(
  { id: Type.String(), name: Type.String(), owner: Type.String() },
  { additionalProperties: true },
);

/** `:id` of a Formpack: the full ID or a prefix of at least 6 hex digits. */
export const IdParams = Type.Object({ id: Type.String({ minLength: 6, maxLength: 64, pattern: '^[0-9a-f]+$' }) });
