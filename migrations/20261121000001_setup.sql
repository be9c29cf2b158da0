-- Setup: extensions, the Supabase-compatible roles and `auth` schema, and shared helpers.
--
-- Everything here is created only when missing, so the same file applies on a plain
-- PostgreSQL 15+ (where it creates what Supabase would provide) and on a Supabase project
-- (where it finds the roles, the `auth` schema and `auth.uid()` already there and leaves them).

-- The seed schema uses uuid_generate_v4() for its primary keys.
-- On Supabase the extension already lives in the `extensions` schema, which is on the search path.
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";

-- Roles are cluster-global: create them only if missing, so a second database in the same
-- cluster (one per test) migrates cleanly.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
    CREATE ROLE anon NOLOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
    CREATE ROLE authenticated NOLOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
    -- The gateway writes as this role: it must bypass row-level security.
    CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
  END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS auth;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;

-- A minimal auth.users: Supabase's has many more columns, ours needs only the key and email.
CREATE TABLE IF NOT EXISTS auth.users (
    id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    email text,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- auth.uid() and auth.jwt() read the JWT claims the way Supabase (PostgREST) exposes them:
-- the whole claims object in `request.jwt.claims`, or the older per-claim `request.jwt.claim.sub`.
-- current_setting(..., true) returns '' (not NULL) once a pooled connection has seen the
-- setting, hence the nullif before the cast.
DO $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'auth' AND p.proname = 'uid'
  ) THEN
    CREATE FUNCTION auth.uid() RETURNS uuid
      LANGUAGE sql STABLE
      AS $fn$
        SELECT coalesce(
          nullif(current_setting('request.jwt.claim.sub', true), ''),
          nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'
        )::uuid
      $fn$;
  END IF;
  IF NOT EXISTS (
    SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'auth' AND p.proname = 'jwt'
  ) THEN
    CREATE FUNCTION auth.jwt() RETURNS jsonb
      LANGUAGE sql STABLE
      AS $fn$
        SELECT coalesce(
          nullif(current_setting('request.jwt.claims', true), ''),
          '{}'
        )::jsonb
      $fn$;
  END IF;
END
$$;

GRANT EXECUTE ON FUNCTION auth.uid() TO anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION auth.jwt() TO anon, authenticated, service_role;
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;

-- Shared trigger function: keeps `updated_at` true on every table that has one.
CREATE OR REPLACE FUNCTION public.set_updated_at() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  NEW.updated_at = now();
  RETURN NEW;
END
$$;
