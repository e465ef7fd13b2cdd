// Drives the real @backstage/catalog-client against a running gateway and checks every served
// entity with @backstage/catalog-model's own validators. Prints one JSON document on stdout.
//
//   CATALOG_URL=http://127.0.0.1:PORT/api/catalog TOKEN=... ADMIN_TOKEN=... node backstage_catalog_client.mjs
import { CatalogClient } from '@backstage/catalog-client';
import {
  EntityPolicies,
  DefaultNamespaceEntityPolicy,
  FieldFormatEntityPolicy,
  NoForeignRootFieldsEntityPolicy,
  SchemaValidEntityPolicy,
  apiEntityV1alpha1Validator,
  componentEntityV1alpha1Validator,
  domainEntityV1alpha1Validator,
  groupEntityV1alpha1Validator,
  locationEntityV1alpha1Validator,
  resourceEntityV1alpha1Validator,
  systemEntityV1alpha1Validator,
  userEntityV1alpha1Validator,
  stringifyEntityRef,
} from '@backstage/catalog-model';
import { createRequire } from 'node:module';

// The alpha entry's ESM build imports `lodash/uniqBy` without an extension, which Node's ESM loader
// refuses; its CommonJS build is the same code.
const { aiResourceEntityV1alpha1Validator, mcpServerApiEntityValidator } = createRequire(import.meta.url)('@backstage/catalog-model/alpha');

const base = process.env.CATALOG_URL;
const token = process.env.TOKEN;
const adminToken = process.env.ADMIN_TOKEN;
const client = new CatalogClient({ discoveryApi: { getBaseUrl: async () => base } });
const auth = { token };
const out = {};

async function failure(promise) {
  try {
    await promise;
    return null;
  } catch (e) {
    return { name: e.name, statusCode: e.response?.status, errorName: e.body?.error?.name, message: e.body?.error?.message };
  }
}

const names = items => items.map(e => e.metadata.name);

// GET /entities: filter, fields, order; then offset/limit and the `after` cursor from the Link header.
out.getEntities = (await client.getEntities(
  { filter: { kind: 'component', 'spec.type': 'service' }, fields: ['kind', 'metadata.name'], order: { field: 'metadata.name', order: 'desc' } },
  auth,
)).items;
const firstApis = (await client.getEntities({ filter: { kind: 'api' }, order: { field: 'metadata.name', order: 'asc' }, limit: 8, offset: 0 }, auth)).items;
const raw = await client.apiClient.getEntities({ query: { filter: ['kind=api'], order: ['asc:metadata.name'], limit: 8 } }, auth);
const link = raw.headers.get('link');
const after = link ? new URL(link.slice(1, link.indexOf('>')), 'http://x').searchParams.get('after') : null;
const nextApis = (await client.getEntities({ filter: { kind: 'api' }, order: { field: 'metadata.name', order: 'asc' }, limit: 8, after }, auth)).items;
const offsetApis = (await client.getEntities({ filter: { kind: 'api' }, order: { field: 'metadata.name', order: 'asc' }, limit: 8, offset: 8 }, auth)).items;
out.getEntitiesPaged = { first: names(firstApis), link, next: names(nextApis), offset: names(offsetApis) };
const all = (await client.getEntities({}, auth)).items;
out.all = all;

// by-refs, with fields, with a filter and with a predicate query.
const refs = ['component:default/artist-lookup', 'api:default/wayback-search', 'component:default/nope'];
out.getEntitiesByRefs = (await client.getEntitiesByRefs({ entityRefs: refs, fields: ['kind', 'metadata.name'] }, auth)).items;
out.getEntitiesByRefsFiltered = (await client.getEntitiesByRefs({ entityRefs: refs, filter: { kind: 'api' } }, auth)).items.map(e => e && e.metadata.name);
out.getEntitiesByRefsQuery = (await client.getEntitiesByRefs({ entityRefs: refs, query: { kind: 'component' } }, auth)).items.map(e => e && e.metadata.name);

// by-query: filter strings over GET, then the cursor.
async function drain(request) {
  const seen = [];
  let page = await client.queryEntities(request, auth);
  const totalItems = page.totalItems;
  seen.push(...names(page.items));
  while (page.pageInfo.nextCursor) {
    page = await client.queryEntities({ cursor: page.pageInfo.nextCursor, limit: request.limit }, auth);
    seen.push(...names(page.items));
  }
  return { totalItems, names: seen };
}
out.queryEntities = await drain({
  filter: { kind: 'component' }, limit: 5, orderFields: { field: 'metadata.name', order: 'asc' }, fields: ['metadata.name'],
});
out.queryEntitiesFullText = await drain({ fullTextFilter: { term: 'wayback' }, limit: 2 });
// POST /entities/by-query: a predicate, paged by a cursor the client recognises as a predicate cursor.
out.queryEntitiesPredicate = await drain({
  query: { $all: [{ kind: 'component' }, { 'spec.type': { $in: ['service', 'website'] } }, { $not: { 'spec.lifecycle': 'experimental' } }] },
  limit: 3,
  orderFields: [{ field: 'metadata.name', order: 'desc' }],
});
out.queryEntitiesFilterAsPredicate = await drain({ query: { 'metadata.tags': { $hasPrefix: 'ja' } }, filter: { kind: 'component' }, limit: 50 });
out.queryEntitiesBadPredicate = await failure(client.queryEntities({ query: { kind: { $regex: '.*' } } }, auth));
const streamed = [];
for await (const page of client.streamEntities({ filter: { kind: 'user' }, pageSize: 4 }, auth)) streamed.push(...names(page));
out.streamEntities = streamed;

// Single entities.
const artist = await client.getEntityByRef('component:default/artist-lookup', auth);
out.getEntityByRef = artist;
out.getEntityByRefMissing = (await client.getEntityByRef('component:default/nope', auth)) ?? null;
out.getEntityByName = (await client.getEntityByName({ kind: 'Component', namespace: 'default', name: 'artist-lookup' }, auth))?.metadata.uid;
const byUid = await client.apiClient.getEntityByUid({ path: { uid: artist.metadata.uid } }, auth);
out.getEntityByUid = { status: byUid.status, name: (await byUid.json()).metadata?.name };
const noUid = await client.apiClient.getEntityByUid({ path: { uid: 'no-such-uid' } }, auth);
out.getEntityByUidMissing = { status: noUid.status, body: await noUid.json() };
const ancestry = await client.getEntityAncestors({ entityRef: 'component:default/artist-lookup' }, auth);
out.getEntityAncestors = {
  rootEntityRef: ancestry.rootEntityRef,
  items: ancestry.items.map(i => ({ ref: stringifyEntityRef(i.entity), parents: i.parentEntityRefs })),
};

// Facets over GET (filter) and POST (predicate).
out.getEntityFacets = (await client.getEntityFacets({ facets: ['kind', 'spec.lifecycle'], filter: { kind: ['component', 'api'] } }, auth)).facets;
out.getEntityFacetsQuery = (await client.getEntityFacets({ facets: ['spec.type'], query: { kind: 'api', 'spec.type': { $in: ['openapi', 'grpc'] } } }, auth)).facets;

// Locations.
const locations = (await client.getLocations({}, auth)).items;
out.getLocations = locations;
out.queryLocations = await client.queryLocations({ limit: 5 }, auth);
const streamedLocations = [];
for await (const page of client.streamLocations({}, auth)) streamedLocations.push(...page);
out.streamLocations = streamedLocations.length;
out.getLocationById = await client.getLocationById(locations[0].id, auth);
out.getLocationByIdMissing = (await client.getLocationById('nope', auth)) ?? null;
out.getLocationByEntity = await client.getLocationByEntity('component:default/artist-lookup', auth);
out.getLocationByRef = await client.getLocationByRef(`${locations[0].type}:${locations[0].target}`, auth);

// Validation and the admin-only refresh.
const valid = { apiVersion: 'backstage.io/v1alpha1', kind: 'Component', metadata: { name: 'fine' }, spec: { type: 'service', lifecycle: 'production', owner: 'team-a' } };
out.validateEntity = await client.validateEntity(valid, 'url:https://example.com/catalog-info.yaml', auth);
out.validateEntityInvalid = await client.validateEntity({ ...valid, metadata: { name: 'not valid!' } }, 'url:https://example.com/catalog-info.yaml', auth);
out.refreshAsUser = await failure(client.refreshEntity('component:default/artist-lookup', auth));
out.refreshAsAdmin = await failure(client.refreshEntity('component:default/artist-lookup', { token: adminToken }));
out.refreshMissing = await failure(client.refreshEntity('component:default/nope', { token: adminToken }));
out.unauthenticated = await failure(client.getEntityByRef('component:default/artist-lookup'));

// catalog-model's validators on every served entity, as Backstage's processing applies them.
const policy = EntityPolicies.allOf([
  new DefaultNamespaceEntityPolicy(), new NoForeignRootFieldsEntityPolicy(), new FieldFormatEntityPolicy(), new SchemaValidEntityPolicy(),
]);
const kindValidators = [
  apiEntityV1alpha1Validator, componentEntityV1alpha1Validator, domainEntityV1alpha1Validator, groupEntityV1alpha1Validator,
  locationEntityV1alpha1Validator, resourceEntityV1alpha1Validator, systemEntityV1alpha1Validator, userEntityV1alpha1Validator,
];
// Spec types with their own schema in catalog-model's model layer (alpha exports) use it; the
// released catalog-model has no schema at all for `ai-model-server` APIs (newer upstream examples).
function validatorsFor(entity) {
  if (entity.kind === 'API' && entity.spec?.type === 'mcp-server') return [mcpServerApiEntityValidator];
  if (entity.kind === 'API' && entity.spec?.type === 'ai-model-server') return [];
  if (entity.kind === 'AiResource') return [aiResourceEntityV1alpha1Validator];
  return kindValidators;
}
out.validation = [];
for (const entity of all) {
  const ref = stringifyEntityRef(entity);
  // Backstage validates an entity as processed; relations are stitched on afterwards.
  const { relations, ...processed } = entity;
  try {
    const enforced = await policy.enforce(processed);
    let checkedBy = null;
    for (const validator of validatorsFor(enforced)) {
      if (await validator.check(enforced)) checkedBy = entity.kind;
    }
    out.validation.push({ ref, ok: true, kindChecked: checkedBy !== null });
  } catch (e) {
    out.validation.push({ ref, ok: false, message: String(e.message).slice(0, 300) });
  }
}

process.stdout.write(JSON.stringify(out));
