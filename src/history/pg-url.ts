/** The PostgreSQL URL as it may be logged: the password replaced (the URL in the config may carry one). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    for (const key of [...u.searchParams.keys()]) if (key.toLowerCase() === 'password') u.searchParams.set(key, '***');
    return u.toString();
  } catch {
    return '(unparsable postgres URL)';
  }
}
