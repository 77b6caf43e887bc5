import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/** Registered at server start (`--search-attribute NAME=Keyword`), filterable in the Temporal UI. */
export const PatchHost = defineSearchAttributeKey('PatchHost', SearchAttributeType.KEYWORD);
export const PatchPhase = defineSearchAttributeKey('PatchPhase', SearchAttributeType.KEYWORD);
export const PatchOutcome = defineSearchAttributeKey('PatchOutcome', SearchAttributeType.KEYWORD);

/** A Proxmox VE container run: `<agentId>/<vmid>` (docs/proxmox.md); host runs do not set it. */
export const PatchContainer = defineSearchAttributeKey('PatchContainer', SearchAttributeType.KEYWORD);

export const SEARCH_ATTRIBUTES = [PatchHost, PatchPhase, PatchOutcome, PatchContainer] as const;
