/**
 * People's roles, and which of them may decide on runs. Here rather than in api/ because the
 * database layer (which approval keys a run pins) and the API (routes, key enrolment) must agree
 * on the same list, and db/ does not import the API.
 */
export const USER_ROLES = ['admin', 'approver', 'requester', 'viewer'] as const;
export type UserRole = (typeof USER_ROLES)[number];

/** The roles that may approve or reject a run and hold an approval key. */
export const APPROVING_ROLES = ['admin', 'approver'] as const satisfies readonly UserRole[];
export const mayDecide = (role: UserRole): boolean => (APPROVING_ROLES as readonly UserRole[]).includes(role);
