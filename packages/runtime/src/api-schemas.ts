import { errorResponses } from '@formation/interface/error-schema';
import { Type } from '@sinclair/typebox';

// Response schemas (TypeBox) of the runtime and AO routes. Records are open (`additionalProperties:
// true`): the manager owns their shape (ProcessInfo, Result, …) and Fastify would drop a property a
// closed schema lacks; the schemas name the fields clients rely on.

const open = { additionalProperties: true } as const;
const Tag = Type.Object({ name: Type.String(), value: Type.String() });

export const RuntimeErrors = errorResponses(400, 401, 403, 404, 409);

export const RuntimeHealthSchema = Type.Object({
  ok: Type.Boolean(),
  nodeId: Type.String(),
  nodeName: Type.String(),
  processes: Type.Integer(),
});
export const RuntimeInfoSchema = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    desc: Type.String(),
    url: Type.String(),
    modules: Type.Integer(),
    processes: Type.Integer(),
  },
  open,
);
/** `moduleToJson`: a module as AO names its fields. */
export const ModuleSchema = Type.Object(
  { id: Type.String(), ModuleFormat: Type.String(), Tags: Type.Array(Tag) },
  open,
);
/** `StoredImage` without its host rootfs path. */
export const ImageSchema = Type.Object(
  { id: Type.String(), repoTags: Type.Array(Type.String()), importedAt: Type.String() },
  { ...open, description: 'StoredImage (config, idShift…) without its rootfs path' },
);
export const ImportedImageSchema = Type.Object(
  { id: Type.String(), repoTags: Type.Array(Type.String()), archive: Type.Optional(Type.String()) },
  open,
);
/** `ProcessInfo`. */
export const ProcessSchema = Type.Object(
  {
    id: Type.String(),
    moduleId: Type.String(),
    owner: Type.String(),
    tags: Type.Array(Tag),
    createdAt: Type.String(),
    lastSequence: Type.Integer(),
    checkpoint: Type.Object({ sha256: Type.String(), sequence: Type.Integer() }, open),
    recoveries: Type.Integer(),
  },
  { ...open, description: 'ProcessInfo (with its container: id, hostPid, alive, or null)' },
);
/** A process's `Result` of one message (messages, spawns, output…), or null when none was kept. */
const ResultSchema = Type.Union([Type.Object({}, { ...open, description: 'Result' }), Type.Null()]);
export const SendOutputSchema = Type.Object(
  { processId: Type.String(), itemId: Type.String(), sequence: Type.Integer(), result: ResultSchema },
  open,
);
export const ResultsSchema = Type.Object({
  results: Type.Array(Type.Object({ sequence: Type.Integer(), itemId: Type.String(), result: ResultSchema }, open)),
});
export const ResultEntrySchema = Type.Object(
  {
    sequence: Type.Integer(),
    itemId: Type.String(),
    entry: Type.Object({}, { ...open, description: 'the log entry (meta and message)' }),
    result: ResultSchema,
  },
  open,
);
export const CheckpointSchema = Type.Object(
  { sha256: Type.String(), sequence: Type.Integer(), size: Type.Integer() },
  open,
);

// AO endpoints
export const SchedulerSchema = Type.Object({
  Name: Type.String(),
  Unit: Type.String(),
  Address: Type.String(),
  Processes: Type.Array(Type.String()),
});
export const AcceptedItemSchema = Type.Object({ id: Type.String(), message: Type.String() });
/** `AoResult`: what an AO compute unit answers for one message. */
export const AoResultSchema = Type.Object(
  {
    Messages: Type.Array(Type.Object({ Target: Type.String(), Data: Type.String(), Tags: Type.Array(Tag) }, open)),
    Spawns: Type.Array(Type.Object({ Data: Type.String(), Tags: Type.Array(Tag) }, open)),
    Output: Type.Union([Type.String(), Type.Object({ data: Type.String() }, open)]),
    Error: Type.Optional(Type.String()),
    GasUsed: Type.Number(),
  },
  open,
);
export const AoResultsSchema = Type.Object({
  edges: Type.Array(
    Type.Object({
      cursor: Type.String(),
      node: Type.Object({ Id: Type.String() }, { ...open, description: 'the message id and its AoResult' }),
    }),
  ),
});
export const GraphqlAnswerSchema = Type.Object(
  {},
  { ...open, description: 'a GraphQL `{ data: { transactions: { edges … } } }` answer' },
);
