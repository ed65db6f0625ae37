import type { z } from 'zod'
import { fieldRegistry, type ReloadClass } from './reload.js'
import { stackConfigSchema } from './schema.js'

/**
 * Walks the stack.yaml schema. zod 4 exposes a schema's definition as `_zod.def`; this file is
 * the one place that reads it, so a change in zod's internals breaks here and only here.
 */
interface Def {
  type: string
  innerType?: z.ZodType
  defaultValue?: unknown
  shape?: Record<string, z.ZodType>
  element?: z.ZodType
  valueType?: z.ZodType
  options?: z.ZodType[]
  discriminator?: string
  values?: unknown[]
  entries?: Record<string, unknown>
  /** A pipe's input (a field parsed by a transform, such as a duration): what the file holds. */
  in?: z.ZodType
}
const defOf = (schema: z.ZodType): Def => (schema as unknown as { _zod: { def: Def } })._zod.def

/** The schema under optional/default/nullable wrappers, with what the wrappers said. */
function unwrap(schema: z.ZodType): { inner: z.ZodType; optional: boolean; defaultValue: unknown } {
  let inner = schema
  let optional = false
  let defaultValue: unknown
  for (;;) {
    const def = defOf(inner)
    if (def.type === 'optional' || def.type === 'nullable') optional = true
    else if (def.type === 'default') {
      optional = true
      defaultValue = typeof def.defaultValue === 'function' ? (def.defaultValue as () => unknown)() : def.defaultValue
    } else return { inner, optional, defaultValue }
    inner = def.innerType!
  }
}

export interface FieldInfo {
  /** Where the field sits: `.name` for object keys, `.<key>` for any key of a map, `[]` for list items. */
  readonly path: string
  /** For fields of one variant of a union (a backend type), that variant's discriminator value. */
  readonly variant: string | undefined
  readonly type: string
  readonly required: boolean
  readonly defaultValue: unknown
  readonly reload: ReloadClass | undefined
  readonly description: string | undefined
}

function typeName(schema: z.ZodType): string {
  const { inner } = unwrap(schema)
  const def = defOf(inner)
  switch (def.type) {
    case 'literal':
      return (def.values ?? []).map(v => JSON.stringify(v)).join(' | ')
    case 'enum':
      return Object.values(def.entries ?? {}).map(v => JSON.stringify(v)).join(' | ')
    case 'array':
      return `list of ${typeName(def.element!)}`
    case 'record':
      return defOf(unwrap(def.valueType!).inner).type === 'unknown' ? 'map' : `map of ${typeName(def.valueType!)}`
    case 'union':
      return def.discriminator !== undefined ? `one of (by ${def.discriminator})` : (def.options ?? []).map(typeName).join(' | ')
    case 'pipe':
      return typeName(def.in!)
    default:
      return def.type
  }
}

function discriminatorValue(option: z.ZodType, key: string): string | undefined {
  const field = defOf(option).shape?.[key]
  const values = field === undefined ? undefined : defOf(unwrap(field).inner).values
  return values?.[0] === undefined ? undefined : String(values[0])
}

/** The branch of a discriminated union that `value`'s discriminator selects. */
function branchFor(def: Def, value: unknown): z.ZodType | undefined {
  const key = def.discriminator
  if (key === undefined || !isPlainObject(value)) return undefined
  return def.options?.find(option => discriminatorValue(option, key) === value[key])
}

/** Every field of the schema, depth first, in declaration order. */
export function listFields(schema: z.ZodType = stackConfigSchema): FieldInfo[] {
  const out: FieldInfo[] = []
  const walk = (node: z.ZodType, path: string, variant: string | undefined): void => {
    const def = defOf(unwrap(node).inner)
    switch (def.type) {
      case 'object':
        for (const [key, field] of Object.entries(def.shape ?? {})) {
          const at = path === '' ? key : `${path}.${key}`
          const meta = fieldRegistry.get(field)
          const { optional, defaultValue } = unwrap(field)
          out.push({ path: at, variant, type: typeName(field), required: !optional, defaultValue, reload: meta?.reload, description: meta?.description })
          walk(field, at, variant)
        }
        return
      case 'array':
        return walk(def.element!, `${path}[]`, variant)
      case 'record':
        return walk(def.valueType!, `${path}.<key>`, variant)
      case 'union':
        for (const option of def.options ?? []) {
          walk(option, path, def.discriminator === undefined ? variant : discriminatorValue(option, def.discriminator))
        }
        return
      default:
        return
    }
  }
  walk(schema, '', undefined)
  return out
}

type Segment = string | number

/**
 * The reload class of a concrete path in a config (`providers.inference[0].config.url` as
 * segments): the class of the deepest schema field along the path. Inside an opaque map (a
 * provider's `config`) that is the map's own class. What the supervisor consults to decide
 * between applying a change live and restarting the subtree that owns it.
 */
export function reloadClassOf(path: readonly Segment[], value: unknown, schema: z.ZodType = stackConfigSchema): ReloadClass | undefined {
  let node: z.ZodType | undefined = schema
  let here: unknown = value
  let found: ReloadClass | undefined
  for (const segment of path) {
    if (node === undefined) break
    let def = defOf(unwrap(node).inner)
    if (def.type === 'union') {
      // Without a value to tell, any branch that has the field answers for it.
      const chosen = branchFor(def, here) ?? def.options?.find(o => defOf(o).shape?.[String(segment)] !== undefined)
      if (chosen === undefined) break
      def = defOf(chosen)
    }
    if (def.type === 'object') node = def.shape?.[String(segment)]
    else if (def.type === 'array') node = def.element
    else if (def.type === 'record') node = def.valueType
    else break
    here = (here as Record<string, unknown> | undefined)?.[segment as string]
    const meta = node === undefined ? undefined : fieldRegistry.get(node)
    if (meta !== undefined) found = meta.reload
  }
  return found
}

/** Keys in `value` that the schema does not define, as concrete paths, for warnings. */
export function unknownKeys(value: unknown, schema: z.ZodType = stackConfigSchema, path = ''): string[] {
  const def = defOf(unwrap(schema).inner)
  const join = (key: string | number): string => (typeof key === 'number' ? `${path}[${key}]` : path === '' ? key : `${path}.${key}`)
  if (def.type === 'object' && isPlainObject(value)) {
    return Object.entries(value).flatMap(([key, child]) => {
      const field = def.shape?.[key]
      return field === undefined ? [join(key)] : unknownKeys(child, field, join(key))
    })
  }
  if (def.type === 'array' && Array.isArray(value)) return value.flatMap((item, i) => unknownKeys(item, def.element!, join(i)))
  if (def.type === 'record' && isPlainObject(value)) return Object.entries(value).flatMap(([key, child]) => unknownKeys(child, def.valueType!, join(key)))
  if (def.type === 'union') {
    const option = branchFor(def, value)
    return option === undefined ? [] : unknownKeys(value, option, path)
  }
  return []
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
