import { REGION } from './keystone.ts';

/** The OpenStack RC of a project: what `ctd local openrc --tenant NAME` prints. */
export function openrcEnv(input: { keystoneUrl: string; project: string; user: string; password: string }): Record<string, string> {
  return {
    OS_AUTH_URL: input.keystoneUrl,
    OS_AUTH_TYPE: 'password',
    OS_IDENTITY_API_VERSION: '3',
    OS_PROJECT_NAME: input.project,
    OS_PROJECT_DOMAIN_NAME: 'Default',
    OS_USERNAME: input.user,
    OS_USER_DOMAIN_NAME: 'Default',
    OS_PASSWORD: input.password,
    OS_REGION_NAME: REGION,
    OS_INTERFACE: 'public',
  };
}

const shellQuote = (v: string) => `'${v.replace(/'/g, `'\\''`)}'`;

export function renderOpenrc(env: Record<string, string>): string {
  return Object.entries(env).map(([k, v]) => `export ${k}=${shellQuote(v)}\n`).join('');
}
