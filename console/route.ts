// Hash routes (#/runs?status=Running, #/runs/ID, ...): the server serves one page at /, and a link can be
// shared without putting anything secret in it.
import { useEffect, useState } from 'preact/hooks';

export interface Route { parts: string[]; query: URLSearchParams }

export function currentRoute(): Route {
  const raw = location.hash.replace(/^#/, '') || '/runs';
  const [path = '', q = ''] = raw.split('?');
  return { parts: path.split('/').filter(Boolean).map((p) => decodeURIComponent(p)), query: new URLSearchParams(q) };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(currentRoute);
  useEffect(() => {
    const on = () => setRoute(currentRoute());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

export function navigate(path: string, query?: URLSearchParams): void {
  const q = query?.toString();
  location.hash = q ? `${path}?${q}` : path;
}
