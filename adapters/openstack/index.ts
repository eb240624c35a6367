export { OpenStackDriver, type OpenStackDriverOptions } from './driver.ts';
export { TOKEN_REFUSED } from './errors.ts';
export { marks } from './marks.ts';
