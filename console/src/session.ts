import type { Session } from './api.ts';

/**
 * Where the API is and whose token to use. The token lives in sessionStorage (gone with the tab);
 * a sign-in link may carry it in the URL fragment, which never reaches a server and is removed at once.
 */

const TOKEN_KEY = 'ctd.token';
const API_KEY = 'ctd.apiUrl';

/** Served by the engine at <api>/console/, the API is the page's own origin and prefix. */
export function defaultApiUrl(location: Location): string {
  const at = location.pathname.indexOf('/console/');
  const prefix = at >= 0 ? location.pathname.slice(0, at) : '';
  return `${location.origin}${prefix}`;
}

export function loadSession(): Session | undefined {
  const [route = '/', query = ''] = location.hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(query || (route.startsWith('token=') ? route : ''));
  const fromLink = params.get('token');
  if (fromLink) {
    sessionStorage.setItem(TOKEN_KEY, fromLink);
    // A link never chooses where the token is sent: a crafted one could aim every later sign-in at
    // another host. Only the sign-in form sets another API; a token link resets to this origin's.
    localStorage.removeItem(API_KEY);
    history.replaceState(null, '', `${location.pathname}${location.search}#${route.startsWith('token=') ? '/' : route}`);
  }
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return undefined;
  return { token, apiUrl: localStorage.getItem(API_KEY) ?? defaultApiUrl(location) };
}

export function saveSession(session: Session): void {
  sessionStorage.setItem(TOKEN_KEY, session.token);
  if (session.apiUrl === defaultApiUrl(location)) localStorage.removeItem(API_KEY);
  else localStorage.setItem(API_KEY, session.apiUrl);
}

export function clearSession(): void {
  sessionStorage.removeItem(TOKEN_KEY);
}
