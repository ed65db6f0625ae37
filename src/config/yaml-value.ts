/**
 * A config's YAML text read into plain values under limits, so that nothing a file holds can make
 * reading it slow, huge or endless, or overflow the stack of the walks that follow (env
 * substitution, validation): yaml's parser and its conversion to values recurse, resolve each
 * alias by scanning the document, and would follow an alias into the value that contains it.
 */
import { isScalar, Lexer, LineCounter, parseDocument, visit, type Document } from 'yaml'
import { ConfigError, formatPath } from './config-error.js'
import { isPlainObject } from './fields.js'

const MAX_SYNTAX_ERRORS = 3
/** A larger config file is refused unread: a stack config is a few KiB, and parsing grows with the text. */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024
/**
 * YAML tokens (scalars, indicators, indents) a config may have; a stack config has a few
 * thousand. What yaml's parser spends grows with the tokens and their nesting, so that a file
 * of brackets within MAX_CONFIG_BYTES would keep it busy for a long time: tokens are counted
 * first, by its lexer, which is many times faster and stops at the limit.
 */
const MAX_TOKENS = 200_000
/**
 * Aliases a config may hold. yaml resolves each by scanning the document's anchors and aliases,
 * and sizes some by walking the whole document, so their cost grows with aliases × size.
 */
const MAX_ALIASES = 100
/** How many copies of anchored values aliases may make in all (yaml's maxAliasCount): a billion laughs stops here. */
const MAX_ALIAS_COPIES = 100
/** How deep mappings and lists may nest; the config's own schema needs fewer than ten levels. */
const MAX_DEPTH = 64
/** How many values the document may hold, counting what each alias copies; checked before anything walks it. */
const MAX_VALUES = 200_000

/**
 * The plain value of the YAML `text`, or a ConfigError with the problem's place: syntax errors
 * and repeated keys at `file:line:col`, an empty document, and what would make reading it or
 * the walks that follow (substitution, validation) slow, huge or endless: a text over
 * MAX_CONFIG_BYTES or MAX_TOKENS, more than MAX_ALIASES aliases, aliases that copy too much (a
 * billion laughs) or refer to a value that contains them (`a: &a [*a]`), nesting past
 * MAX_DEPTH, more than MAX_VALUES values.
 */
export function yamlValue(text: string, source: string): unknown {
  const bytes = Buffer.byteLength(text)
  if (bytes > MAX_CONFIG_BYTES) throw tooLarge(String(bytes), source)
  const lineCounter = new LineCounter()
  const refuse = (message: string, path = source): never => {
    throw new ConfigError([{ path, message }], source)
  }
  const place = (offset: number): string => {
    const { line, col } = lineCounter.linePos(offset)
    return `${source}:${line}:${col}`
  }
  let tokens = 0
  for (const _token of new Lexer().lex(text)) if (++tokens > MAX_TOKENS) refuse(`more than ${MAX_TOKENS} YAML tokens; a stack config has a few thousand`)
  let raw: unknown
  try {
    // yaml's own check of unique keys compares each key of a mapping with every other one.
    const document = parseDocument(text, { prettyErrors: true, lineCounter, uniqueKeys: false })
    if (document.errors.length > 0) throw syntaxErrors(document, source)
    if (isEmpty(document)) refuse('the config is empty')
    const duplicate = duplicateKey(document)
    if (duplicate !== undefined) refuse(`the key ${JSON.stringify(duplicate.key)} appears twice in one mapping`, place(duplicate.offset))
    const alias = aliasPast(document, MAX_ALIASES)
    if (alias !== undefined) refuse(`more than ${MAX_ALIASES} aliases`, place(alias))
    raw = document.toJS({ maxAliasCount: MAX_ALIAS_COPIES })
  } catch (error) {
    // yaml's own refusals of aliases, thrown rather than reported.
    if (error instanceof ReferenceError) {
      const bomb = error.message.startsWith('Excessive alias count')
      refuse(bomb ? `aliases copy anchored values more than ${MAX_ALIAS_COPIES} times in all; refused as an alias bomb` : error.message)
    }
    // yaml composes and converts recursively.
    if (error instanceof RangeError) refuse(`the YAML cannot be read: ${/call stack/.test(error.message) ? 'it nests too deeply' : error.message}`)
    throw error
  }
  const unbounded = unboundedAt(raw)
  if (unbounded !== undefined) refuse(unbounded.message, formatPath(unbounded.path) || source)
  return raw
}

/** No content but comments and document markers: yaml reads `---` alone as an empty plain scalar. */
function isEmpty(document: Document.Parsed): boolean {
  const contents = document.contents
  return contents === null || (isScalar(contents) && contents.value === null && contents.source === '')
}

function syntaxErrors(document: Document.Parsed, source: string): ConfigError {
  // After the first few, YAML errors are nearly always consequences of the first.
  const shown = document.errors.slice(0, MAX_SYNTAX_ERRORS).map(error => {
    const at = error.linePos?.[0]
    const message = (error.message.split('\n')[0] ?? error.message).replace(/ at line \d+, column \d+:?$/, '')
    // yaml reports a stack overflow of its own, here where the nesting got too deep for it.
    return { path: at ? `${source}:${at.line}:${at.col}` : source, message: /call stack/.test(message) ? 'nested too deeply to parse' : message }
  })
  const more = document.errors.length - shown.length
  if (more > 0) shown.push({ path: source, message: `${more} more YAML errors after these, most likely caused by the first` })
  return new ConfigError(shown, source)
}

/** The first key that a mapping repeats, and its offset in the text: a set per mapping, where yaml compares every pair. */
function duplicateKey(document: Document.Parsed): { key: string; offset: number } | undefined {
  let duplicate: { key: string; offset: number } | undefined
  visit(document, {
    Map(_key, map) {
      const seen = new Set<unknown>()
      for (const { key } of map.items) {
        // A key that is a mapping or a list is never the same as another, as yaml has it.
        const value = isScalar(key) ? key.value : key
        if (!seen.has(value)) {
          seen.add(value)
          continue
        }
        duplicate = { key: String(value), offset: isScalar(key) ? (key.range?.[0] ?? 0) : 0 }
        return visit.BREAK
      }
      return undefined
    },
  })
  return duplicate
}

/** The offset in the text of the first alias past the first `max`, if there are more. */
function aliasPast(document: Document.Parsed, max: number): number | undefined {
  let count = 0
  let past: number | undefined
  visit(document, {
    Alias(_key, node) {
      if (++count <= max) return undefined
      past = node.range?.[0] ?? 0
      return visit.BREAK
    },
  })
  return past
}

interface Walked {
  readonly value: unknown
  readonly key: string | number | undefined
  readonly parent: Walked | undefined
  readonly depth: number
}

/**
 * Where the value stops being a finite tree of bounded size and depth, with why; undefined when
 * it is one. Iterative, and it stops at the first problem: this is what makes the recursive
 * walks after it safe.
 */
function unboundedAt(root: unknown): { path: Array<string | number>; message: string } | undefined {
  const stack: Walked[] = [{ value: root, key: undefined, parent: undefined, depth: 0 }]
  let values = 0
  const at = (walked: Walked, message: string) => {
    const path: Array<string | number> = []
    for (let node: Walked | undefined = walked; node?.key !== undefined; node = node.parent) path.unshift(node.key)
    return { path, message }
  }
  while (stack.length > 0) {
    const walked = stack.pop()!
    if (++values > MAX_VALUES) return at(walked, `the config holds more than ${MAX_VALUES} values, counting each alias's copy`)
    const { value } = walked
    const list = Array.isArray(value)
    if (!list && !isPlainObject(value)) continue
    for (let up = walked.parent; up !== undefined; up = up.parent) {
      if (up.value === value) return at(walked, 'an alias refers to a value that contains it: the config would be infinite')
    }
    if (walked.depth === MAX_DEPTH) return at(walked, `nested more than ${MAX_DEPTH} deep`)
    const depth = walked.depth + 1
    if (list) value.forEach((child: unknown, index) => stack.push({ value: child, key: index, parent: walked, depth }))
    else for (const key of Object.keys(value)) stack.push({ value: value[key], key, parent: walked, depth })
  }
  return undefined
}

/** The refusal of a config of `bytes` (a count, or `more than N`). */
export function tooLarge(bytes: string, source: string): ConfigError {
  return new ConfigError([{ path: source, message: `the config is ${bytes} bytes; the limit is ${MAX_CONFIG_BYTES}` }], source)
}
