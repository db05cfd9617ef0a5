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
