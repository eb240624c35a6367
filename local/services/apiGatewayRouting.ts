import type { APIGatewayAuthorizerResult, Statement } from 'aws-lambda';

/** A route as API Gateway models it: a resource template (`/deployments/{id}`) and a method. */
export interface RouteTemplate {
  method: string;
  resource: string;
}

export type RouteMatch<R extends RouteTemplate> =
  | { kind: 'matched'; route: R; pathParameters: Record<string, string> | null }
  /** The path matches a resource that has no such method: API Gateway answers 403, not 405. */
  | { kind: 'methodNotAllowed' }
  | { kind: 'noResource' };

function segments(path: string): string[] {
  return path.split('/').filter((s) => s.length > 0);
}

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/**
 * Matches the path against one resource template. Returns the parameters and a specificity
 * score: literal segments beat `{param}`, which beats greedy `{param+}`, as in API Gateway.
 */
function matchResource(resource: string, path: string[]): { params: Record<string, string>; score: number[] } | undefined {
  const template = segments(resource);
  const params: Record<string, string> = {};
  const score: number[] = [];
  for (let i = 0; i < template.length; i++) {
    const part = template[i] as string;
    const greedy = /^\{(.+)\+\}$/.exec(part);
    if (greedy?.[1]) {
      if (i >= path.length) return undefined;
      params[greedy[1]] = path.slice(i).map(decode).join('/');
      score.push(0);
      return { params, score };
    }
    const value = path[i];
    if (value === undefined) return undefined;
    const param = /^\{(.+)\}$/.exec(part);
    if (param?.[1]) {
      params[param[1]] = decode(value);
      score.push(1);
    } else if (part === value) {
      score.push(2);
    } else {
      return undefined;
    }
  }
  return template.length === path.length ? { params, score } : undefined;
}

function compareScores(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const diff = (a[i] ?? -1) - (b[i] ?? -1);
    if (diff !== 0) return diff;
  }
  return 0;
}

/** Picks the most specific resource, then its method (an exact method beats `ANY`). */
export function matchRoute<R extends RouteTemplate>(routes: readonly R[], method: string, path: string): RouteMatch<R> {
  const pathSegments = segments(path);
  let best: { resource: string; params: Record<string, string>; score: number[] } | undefined;
  for (const route of routes) {
    const match = matchResource(route.resource, pathSegments);
    if (match && (!best || compareScores(match.score, best.score) > 0)) best = { resource: route.resource, ...match };
  }
  if (!best) return { kind: 'noResource' };
  const sameResource = routes.filter((r) => r.resource === best.resource);
  const route =
    sameResource.find((r) => r.method.toUpperCase() === method.toUpperCase()) ?? sameResource.find((r) => r.method.toUpperCase() === 'ANY');
  if (!route) return { kind: 'methodNotAllowed' };
  return { kind: 'matched', route, pathParameters: Object.keys(best.params).length > 0 ? best.params : null };
}

function glob(pattern: string, value: string): boolean {
  const regex = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${regex}$`).test(value);
}

function asList(value: string | string[] | undefined): string[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

function statementMatches(statement: Statement, methodArn: string): boolean {
  // Only Action + Resource statements are evaluated; NotAction/NotResource never match here.
  const actions = 'Action' in statement ? asList(statement.Action) : [];
  const resources = 'Resource' in statement ? asList(statement.Resource) : [];
  return actions.some((a) => glob(a, 'execute-api:Invoke')) && resources.some((r) => glob(r, methodArn));
}

/** IAM evaluation reduced to what authorizers return: an explicit Deny wins, else an Allow is needed. */
export function policyAllows(result: APIGatewayAuthorizerResult, methodArn: string): boolean {
  const statements = result.policyDocument?.Statement ?? [];
  const matching = statements.filter((s) => statementMatches(s, methodArn));
  return !matching.some((s) => s.Effect === 'Deny') && matching.some((s) => s.Effect === 'Allow');
}
