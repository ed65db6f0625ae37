export interface ConfigIssue {
  /** Where: a config path (`providers.inference[1].config.base_url`) or `file:line:col`. */
  readonly path: string
  readonly message: string
}

/** A config that cannot be used. `issues` lists every problem found, each with its path. */
export class ConfigError extends Error {
  override name = 'ConfigError'
  readonly code = 'invalid_config'
  readonly issues: readonly ConfigIssue[]
  constructor(
    issues: readonly ConfigIssue[],
    readonly source: string,
  ) {
    // A problem at the top, or under a key that is the empty string, is placed in the file.
    const placed = issues.map(issue => (issue.path === '' ? { ...issue, path: source } : issue))
    super(`${source} is not a valid stack config:\n${placed.map(i => `  ${i.path}: ${i.message}`).join('\n')}`)
    this.issues = placed
  }
}

export function formatPath(path: ReadonlyArray<string | number | symbol>): string {
  let out = ''
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`
    else out += out === '' ? String(segment) : `.${String(segment)}`
  }
  return out
}
