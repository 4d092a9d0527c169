// SPDX-License-Identifier: Apache-2.0
import type { z } from 'zod';
import { KmError } from '../errors.ts';

/** Parses with a schema, or throws KM_ERR_INVALID_SPEC naming the first bad path. */
export function parseSpec<S extends z.ZodType>(schema: S, input: unknown, what: string): z.output<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const first = r.error.issues[0];
  const where = first?.path.join('.') || '(root)';
  throw new KmError('KM_ERR_INVALID_SPEC', `invalid ${what} at ${where}: ${first?.message ?? 'invalid'}`, { cause: r.error });
}
