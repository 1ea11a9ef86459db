/**
 * The token the user pasted and its role. Kept in sessionStorage only: it survives a reload of
 * the tab and dies with it; never in localStorage, a cookie or a URL.
 */
export type Role = "admin" | "read-only";

const KEY = "kiln.token";

export function savedToken(): string | null {
  return sessionStorage.getItem(KEY);
}

export function saveToken(token: string): void {
  sessionStorage.setItem(KEY, token);
}

export function forgetToken(): void {
  sessionStorage.removeItem(KEY);
}
