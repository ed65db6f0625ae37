import { z } from 'zod'

/**
 * How a change to a field is applied while troupe runs:
 * - `hot`: the owning actor gets a config:update message and applies it live;
 * - `restart`: the owning actor subtree is drained and restarted with the new config while the
 *   rest keeps serving.
 * No field needs a process restart.
 */
export type ReloadClass = 'hot' | 'restart'

export interface FieldMeta {
  readonly reload: ReloadClass
  readonly description: string
}

/**
 * The one machine-readable place that says how each field reloads: every field of the
 * stack.yaml schema is registered here with its class and description (a test enforces it).
 */
export const fieldRegistry = z.registry<FieldMeta>()

/** A field applied live. */
export function hot<T extends z.ZodType>(schema: T, description: string): T {
  fieldRegistry.add(schema, { reload: 'hot', description })
  return schema
}

/** A field whose change restarts the actor subtree that owns it. */
export function restart<T extends z.ZodType>(schema: T, description: string): T {
  fieldRegistry.add(schema, { reload: 'restart', description })
  return schema
}
