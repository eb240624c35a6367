import { ErrorName, StepError } from '../../core/errors.ts';
import type { OpenStackHttp } from './http.ts';
import { parseBody } from './http.ts';
import { ImageSchema, ImagesSchema } from './schemas.ts';

/** Glance v2, only to turn an image name into the id Nova needs. */
export class Glance {
  constructor(
    private readonly http: OpenStackHttp,
    private readonly token: string,
    private readonly url: string,
  ) {}

  async findImage(ref: string, what: string): Promise<string> {
    const direct = await this.http.call(this.token, { method: 'GET', url: `${this.url}/images/${encodeURIComponent(ref)}`, what, accept: [400, 404] });
    if (direct.status === 200) return parseBody(ImageSchema, direct, what, this.token).id;
    const listed = await this.http.call(this.token, { method: 'GET', url: `${this.url}/images?name=${encodeURIComponent(ref)}`, what });
    const images = parseBody(ImagesSchema, listed, what, this.token).images;
    if (images.length === 1) return images[0]!.id;
    throw new StepError(
      ErrorName.StepFailed,
      images.length === 0 ? `image "${ref}" does not exist in this project` : `image name "${ref}" is ambiguous (${images.length} images); use its id`,
    );
  }
}

