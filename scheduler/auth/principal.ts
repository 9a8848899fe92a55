// Who is calling, as every handler is told (scheduler/grpc/handlers.ts authenticates once per call).
// Client tokens carry a role and a project; agents are known by name, through their credential; an agent
// that registers for the first time holds only a join token until Register issues its credential.

export const Roles = ['admin', 'member', 'reader'] as const;
export type Role = (typeof Roles)[number];

export type Principal =
  | { readonly kind: 'user'; readonly tokenId: string; readonly role: Role; readonly project: string }
  // identitySha256: the SHA-256 of the credential it presented (Register keeps the name's row only for it).
  | { readonly kind: 'agent'; readonly agent: string; readonly identitySha256: string }
  | { readonly kind: 'joining'; readonly tokenId: string };

/** How a principal is named in logs and refusals (never with a secret). */
export function describePrincipal(p: Principal): string {
  switch (p.kind) {
    case 'user': return `token ${p.tokenId} (${p.role} of project "${p.project}")`;
    case 'agent': return `agent "${p.agent}"`;
    case 'joining': return `join token ${p.tokenId}`;
    default: return p satisfies never;
  }
}
