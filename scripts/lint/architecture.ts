import { cruise, type ICruiseResult, type IForbiddenRuleType } from 'dependency-cruiser';
import extractTSConfig from 'dependency-cruiser/config-utl/extract-ts-config';

/**
 * The import graph's rules: no cycles (type-only imports included) and the layers of
 * docs/ARCHITECTURE.md. dependency-cruiser checks them because it resolves every import, type-only
 * ones too (eslint-plugin-import-x's no-cycle skips `import type`, so it missed both cycles of issue 10).
 */

/** Lowest first. core ← adapters ← lambdas/sandbox/cdk ← local ← cli: what each may import besides itself. */
export const LAYERS = {
  core: [],
  adapters: ['core'],
  lambdas: ['core', 'adapters'],
  sandbox: ['core', 'adapters'],
  cdk: ['core', 'adapters'],
  local: ['core', 'adapters', 'lambdas', 'sandbox', 'cdk'],
  cli: ['core', 'adapters', 'lambdas', 'sandbox', 'cdk', 'local'],
} as const satisfies Record<string, readonly string[]>;
type Layer = keyof typeof LAYERS;

/** Outside the layers: they may import anything, and no layer may import them. */
const OUTSIDE = ['test', 'scripts', 'bench', 'console'] as const;

/** Every tree the graph is read from. */
export const SOURCE_ROOTS = [...Object.keys(LAYERS), ...OUTSIDE.filter((d) => d !== 'console'), 'console/src'];

/**
 * Deliberate exceptions, each one file wide. The Lambda catalog is the one list of functions
 * (STYLE.md "one source for each list"), pure data over core; cdk builds functions, grants and routes from it.
 */
const EXCEPTIONS: Partial<Record<Layer, readonly string[]>> = {
  cdk: ['^lambdas/catalog\\.ts$'],
};

/** core knows nothing of AWS (STYLE.md): these packages (regular expressions), resolved into node_modules/ or not. */
const AWS_PACKAGES = ['@aws-sdk/[^/]+', '@smithy/[^/]+', '@aws-lambda-powertools/[^/]+', 'aws-cdk-lib', 'aws-cdk', 'constructs', 'cdk-nag', 'aws-lambda', '@types/aws-lambda'];

export function architectureRules(): IForbiddenRuleType[] {
  const layers = Object.keys(LAYERS) as Layer[];
  const layerRules = layers.map((layer): IForbiddenRuleType => {
    const allowed: readonly string[] = LAYERS[layer];
    const forbidden = [...layers.filter((l) => l !== layer && !allowed.includes(l)), ...OUTSIDE];
    return {
      name: `layer-${layer}`,
      comment: `${layer}/ may import only ${allowed.join(', ') || 'core itself'} (and never test, scripts, bench, console): move what both need to the lower layer.`,
      severity: 'error',
      from: { path: `^${layer}/` },
      to: { path: `^(${forbidden.join('|')})/`, ...(EXCEPTIONS[layer] ? { pathNot: [...EXCEPTIONS[layer]] } : {}) },
    };
  });
  return [
    {
      name: 'no-circular',
      comment: 'Import cycle (type-only imports count): move the shared piece to its own module.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    ...layerRules,
    {
      name: 'core-no-aws',
      comment: 'core/ knows nothing of AWS: put this behind a port in core/ports.ts and implement it in adapters/.',
      severity: 'error',
      from: { path: '^core/' },
      to: { path: `(^|node_modules/)(${AWS_PACKAGES.join('|')})($|/)` },
    },
  ];
}

/** Cruises `roots` under `baseDir`, resolving through its tsconfig.json, and validates them against the rules. */
export async function cruiseArchitecture(baseDir: string, roots: readonly string[] = SOURCE_ROOTS): Promise<ICruiseResult> {
  const { output } = await cruise(
    [...roots],
    {
      baseDir,
      validate: true,
      ruleSet: { forbidden: architectureRules() },
      tsPreCompilationDeps: true,
      tsConfig: { fileName: 'tsconfig.json' },
      doNotFollow: { path: 'node_modules' },
      // Not node_modules: excluding it would hide the imports core-no-aws looks for (doNotFollow suffices).
      exclude: { path: '^(cdk\\.out|console/dist)/' },
    },
    { extensions: ['.ts', '.js', '.mjs', '.cjs', '.json'] },
    { tsConfig: extractTSConfig(`${baseDir}/tsconfig.json`) },
  );
  if (typeof output === 'string') throw new Error('dependency-cruiser returned a report instead of a cruise result');
  return output;
}
