/** What the services' row-to-view functions share: a nullable timestamp column as the API shows it. */
export const iso = (d: Date | null | undefined): string | null => (d ? d.toISOString() : null);
