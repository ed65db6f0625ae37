import type { z } from 'zod'
import { isPlainObject, reloadClassOf } from './fields.js'
import type { ReloadClass } from './reload.js'
import { stackConfigSchema, type StackConfig } from './schema.js'

/** One field that differs between two configs, as deep as the two values differ. */
export interface ConfigChange {
  /**
   * Where, as segments: object keys, and for the lists whose items have an identity (providers
   * by provider_id, workflows by name, registered models by model_id) that identity, so that a
   * reordered list is no change and a change names the item, not its position.
   */
  readonly segments: readonly string[]
  /** The segments for people: `providers.inference[ollama].config.base_url`. */
  readonly path: string
  readonly reload: ReloadClass
  /** undefined when the field was added. */
  readonly before: unknown
  /** undefined when the field was removed (it returns to its default). */
  readonly after: unknown
}

/**
 * Lists whose items are matched by a key rather than by position: the path to the list (with
 * `*` for a map key) and the item field that identifies an item.
 */
const KEYED_LISTS: ReadonlyArray<{ readonly at: readonly string[]; readonly key: string }> = [
  { at: ['providers', '*'], key: 'provider_id' },
  { at: ['workflows'], key: 'name' },
  { at: ['registered_resources', 'models'], key: 'model_id' },
]

function keyedListKey(segments: readonly string[]): string | undefined {
  return KEYED_LISTS.find(list => list.at.length === segments.length && list.at.every((part, i) => part === '*' || part === segments[i]))?.key
}

/**
 * Every field that differs between `before` and `after` (both parsed, defaults filled), each with
 * the reload class the schema gives it. Objects and maps are compared key by key and keyed lists
 * item by item; other lists and scalars compare whole. Pure: the supervisor decides from this
 * what to apply live and what to restart.
 */
export function diffConfig(before: StackConfig, after: StackConfig, schema: z.ZodType = stackConfigSchema): ConfigChange[] {
  const changes: ConfigChange[] = []
  const walk = (a: unknown, b: unknown, segments: string[], display: string): void => {
    if (sameValue(a, b)) return
    const key = keyedListKey(segments)
    if (key !== undefined && Array.isArray(a) && Array.isArray(b)) {
      const index = (list: unknown[]): Map<string, unknown> => new Map(list.map((item, i) => [isPlainObject(item) && typeof item[key] === 'string' ? item[key] : `#${i}`, item]))
      const left = index(a)
      const right = index(b)
      for (const id of new Set([...left.keys(), ...right.keys()])) walk(left.get(id), right.get(id), [...segments, id], `${display}[${id}]`)
      return
    }
    if (isPlainObject(a) && isPlainObject(b)) {
      for (const field of new Set([...Object.keys(a), ...Object.keys(b)])) walk(a[field], b[field], [...segments, field], display === '' ? field : `${display}.${field}`)
      return
    }
    changes.push({ segments, path: display, reload: classOf(segments, before, after, schema), before: a, after: b })
  }
  walk(before, after, [], '')
  return changes
}

/**
 * A change's class: the deepest registered field along its path, looked up in the config that
 * holds the field (the new one, or the old one for a removed field, so that a backend's union
 * branch is chosen by its own type). Keyed list items are looked up by position, as the schema
 * sees them. A path the schema does not know is a restart, the safe answer.
 */
function classOf(segments: readonly string[], before: StackConfig, after: StackConfig, schema: z.ZodType): ReloadClass {
  const lookup = (config: StackConfig): ReloadClass | undefined => reloadClassOf(positional(segments, config), config, schema)
  return lookup(after) ?? lookup(before) ?? 'restart'
}

/** Segments with each keyed list item's identity turned back into its position in `config`. */
function positional(segments: readonly string[], config: StackConfig): Array<string | number> {
  const out: Array<string | number> = []
  let here: unknown = config
  for (const segment of segments) {
    const key = keyedListKey(segments.slice(0, out.length))
    let step: string | number = segment
    if (key !== undefined && Array.isArray(here)) {
      const at = here.findIndex(item => isPlainObject(item) && item[key] === segment)
      step = at === -1 ? 0 : at
    }
    out.push(step)
    here = (here as Record<string | number, unknown> | undefined)?.[step]
  }
  return out
}

/** Structural equality of parsed config values (JSON-like: no dates, no functions). */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((item, i) => sameValue(item, b[i]))
  if (isPlainObject(a) && isPlainObject(b)) {
    const keys = Object.keys(a).filter(k => a[k] !== undefined)
    return keys.length === Object.keys(b).filter(k => b[k] !== undefined).length && keys.every(k => sameValue(a[k], b[k]))
  }
  return false
}
