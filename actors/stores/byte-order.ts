/**
 * The order every store backend sorts keys and text in: UTF-8 bytes, which is what LMDB's
 * ordered-binary keys, Postgres text COLLATE "C" and Redis ZRANGEBYLEX all use. JavaScript's
 * own string comparison (UTF-16 code units) differs for characters beyond the BMP.
 */
export function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b))
}
