/**
 * What the stand-ins for Redshift and the Data APIs share about a PostgreSQL session: Redshift's
 * session defaults that PostgreSQL does not share, and values typed as the Data APIs type them.
 */
import pg from 'pg';
import { SHIM_SCHEMA } from './redshift-sql';

/** Redshift's session defaults, for a PostgreSQL session standing in for a Redshift one. */
export const REDSHIFT_SESSION_SETUP = [
  'SET standard_conforming_strings = off',
  'SET escape_string_warning = off',
  "SET timezone TO 'UTC'",
  "SET datestyle TO 'ISO, MDY'",
  // Redshift's default is 0, PostgreSQL's (12 and later) 1.
  'SET extra_float_digits TO 0',
  `SET search_path TO "$user", public, ${SHIM_SCHEMA}`,
].join('; ');

const { builtins } = pg.types;

/**
 * Column values as the Data APIs type them (Redshift's records and RDS's JSON alike): integers
 * and floats as numbers, booleans as booleans, everything else as the text PostgreSQL prints.
 */
export const DATA_API_VALUE_TYPES: pg.CustomTypesConfig = {
  getTypeParser: (oid: number) => {
    switch (oid) {
      case builtins.INT2:
      case builtins.INT4:
      case builtins.INT8:
      case builtins.FLOAT4:
      case builtins.FLOAT8:
        return Number;
      case builtins.BOOL:
        return (value: string) => value === 't';
      default:
        return (value: string) => value;
    }
  },
};
