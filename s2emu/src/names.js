// Basin and stream name rules (s2-api.md §1.2, §3.1). Return an error message or null.

export function basinNameError(name, field = 'name') {
  const len = Buffer.byteLength(name, 'utf8');
  if (len > 48) return `basin ${field} must not exceed 48 bytes in length`;
  if (len < 8) return `basin ${field} should be at least 8 bytes in length`;
  if (!/^[a-z0-9]/.test(name)) return `basin ${field} must begin with a lowercase letter or number`;
  if (!/[a-z0-9]$/.test(name)) return `basin ${field} must end with a lowercase letter or number`;
  if (!/^[a-z0-9-]*$/.test(name)) return `basin ${field} must comprise lowercase letters, numbers, and hyphens`;
  return null;
}

export function basinPrefixError(prefix) {
  if (prefix === '') return null;
  if (Buffer.byteLength(prefix, 'utf8') > 48) return 'basin prefix must not exceed 48 bytes in length';
  if (!/^[a-z0-9]/.test(prefix)) return 'basin prefix must begin with a lowercase letter or number';
  if (!/^[a-z0-9-]*$/.test(prefix)) return 'basin prefix must comprise lowercase letters, numbers, and hyphens';
  return null;
}

export function streamNameError(name, field = 'name') {
  if (name.length === 0) return `stream ${field} must not be empty`;
  if (name === '.' || name === '..') return `stream ${field} must not be "." or ".."`;
  if (Buffer.byteLength(name, 'utf8') > 512) return `stream ${field} must not exceed 512 bytes in length`;
  return null;
}
