import { statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, isAbsolute, resolve as resolvePath } from 'node:path'
import { pathToFileURL } from 'node:url'

/**
 * Imports a module the config names, resolved as an import in the config file would be; a
 * module that cannot be found or loaded is a problem in one line, naming it.
 */
export async function importModule(specifier: string, configFile: string): Promise<{ module: Record<string, unknown>; url: string } | { problem: string }> {
  const location = locateModule(specifier, configFile)
  if ('problem' in location) return { problem: `cannot load ${specifier}: ${location.problem}` }
  try {
    return { module: (await import(location.url)) as Record<string, unknown>, url: location.url }
  } catch (error) {
    return { problem: `cannot load ${specifier}: ${describeError(error)}` }
  }
}

/**
 * The URL of a module the config names (a workflow's, a provider's). As in an import: `./`, `../`, an absolute path or a file: URL
 * is a file (relative to the config file's directory); anything else is a package specifier,
 * resolved from that directory's node_modules.
 */
function locateModule(specifier: string, configFile: string): { url: string } | { problem: string } {
  if (specifier.startsWith('file:')) return { url: specifier }
  if (specifier.startsWith('./') || specifier.startsWith('../') || isAbsolute(specifier)) {
    const file = resolvePath(dirname(configFile), specifier)
    try {
      statSync(file)
    } catch (error) {
      return { problem: `${(error as NodeJS.ErrnoException).code ?? describeError(error)} (${file})` }
    }
    return { url: pathToFileURL(file).href }
  }
  try {
    // Node 20's import.meta.resolve cannot take a parent; require's resolution from the config's
    // directory finds the same package (through its "exports" "require"/"default" conditions).
    return { url: pathToFileURL(createRequire(configFile).resolve(specifier)).href }
  } catch (error) {
    // `workflows/a.js` reads as a package named 'workflows'; say so when such a file exists.
    const asFile = resolvePath(dirname(configFile), specifier)
    const hint = fileExists(asFile) ? `; for the file ${asFile}, write ./${specifier}` : ''
    return { problem: `${describeError(error)}${hint}` }
  }
}

function fileExists(file: string): boolean {
  try {
    return statSync(file).isFile()
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return false
    throw error
  }
}

/** An import failure in one line: its code, and its message's first line without the code repeated. */
function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error)
  const code = (error as NodeJS.ErrnoException).code
  const line = error.message.split('\n')[0] ?? error.message
  return code === undefined || line.includes(code) ? line : `${code}: ${line}`
}

