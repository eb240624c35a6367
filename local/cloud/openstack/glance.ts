import { glanceNotFound, reply, type Route } from './http.ts';
import { IMAGES, type ImageRecord } from './catalog.ts';
import { SERVICE_PROJECT } from './cloud.ts';

const CREATED = '2026-01-01T00:00:00Z';

function view(image: ImageRecord) {
  return {
    id: image.id,
    name: image.name,
    status: 'active',
    visibility: 'public',
    disk_format: 'qcow2',
    container_format: 'bare',
    size: 1073741824,
    virtual_size: 2147483648,
    min_ram: 0,
    min_disk: 0,
    protected: false,
    os_hidden: false,
    os_distro: image.os_distro,
    owner: SERVICE_PROJECT,
    checksum: null,
    os_hash_algo: null,
    os_hash_value: null,
    tags: [],
    created_at: CREATED,
    updated_at: CREATED,
    self: `/v2/images/${image.id}`,
    file: `/v2/images/${image.id}/file`,
    schema: '/v2/schemas/image',
  };
}

/** Glance v2, read-only: the version list and the local cloud's fixed public images. */
export function glanceRoutes(baseUrl: string): Route[] {
  const versions = ['2.15', '2.9', '2.0'].map((v, i) => ({ id: `v${v}`, status: i === 0 ? 'CURRENT' : 'SUPPORTED', links: [{ rel: 'self', href: `${baseUrl}/v2/` }] }));
  return [
    { method: 'GET', pattern: /^\/?$/, open: true, handler: () => reply({ versions }, 300) },
    { method: 'GET', pattern: /^\/versions$/, open: true, handler: () => reply({ versions }) },
    {
      method: 'GET',
      pattern: /^\/v2\/images$/,
      handler: (req) => {
        const name = req.query.get('name');
        const id = req.query.get('id');
        const images = IMAGES.filter((i) => (name === null || i.name === name) && (id === null || i.id === id)).map(view);
        return reply({ images, first: `/v2/images${req.query.size ? `?${req.query}` : ''}`, schema: '/v2/schemas/images' });
      },
    },
    {
      method: 'GET',
      pattern: /^\/v2\/images\/([^/]+)$/,
      handler: (_req, [id]) => {
        const image = IMAGES.find((i) => i.id === id);
        if (!image) throw glanceNotFound(`No image found with ID ${id}`);
        return reply(view(image));
      },
    },
  ];
}
