// The error body as a TypeBox response schema, for the services' routes. A subpath of its own
// (`@formation/interface/error-schema`) so that clients importing the contract (the light client, the
// browser) do not load TypeBox.
import { Type } from '@sinclair/typebox';

/**
 * `ErrorBody` as a response schema (TypeBox): what every Formation API answers an error with. Routes
 * declare it for their error statuses (`response: { 404: ErrorBodySchema }`); it keeps `details`.
 */
export const ErrorBodySchema = Type.Object(
  {
    error: Type.Object({
      code: Type.String(),
      message: Type.String(),
      hint: Type.Optional(Type.String()),
      details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    }),
  },
  { description: 'An error: a stable code, a message for people, what to do next (hint), details' },
);

/**
 * The response entries for a service's error statuses, each `ErrorBodySchema`:
 * `response: { 200: Ok, ...errorResponses(400, 404) }`. One place says what an error answer is, so
 * every route's OpenAPI document and serializer agree.
 */
export function errorResponses<S extends number>(...statuses: S[]): Record<S, typeof ErrorBodySchema> {
  return Object.fromEntries(statuses.map((s) => [s, ErrorBodySchema])) as Record<S, typeof ErrorBodySchema>;
}
