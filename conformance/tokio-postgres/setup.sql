-- Roles and extensions of upstream rust-postgres docker/sql_setup.sh, which the tokio-postgres
-- test suite expects. One deliberate difference: md5_user's password is stored as an MD5 hash
-- (as it was under the postgres:11 image the tests were written for). Under the current
-- upstream image (postgres:17, password_encryption = scram-sha-256) it is stored as SCRAM and
-- the "md5" pg_hba method then silently performs SCRAM, so MD5 auth would not be exercised.
\set ON_ERROR_STOP 1
CREATE ROLE pass_user PASSWORD 'password' LOGIN;
SET password_encryption TO 'md5';
CREATE ROLE md5_user PASSWORD 'password' LOGIN;
SET password_encryption TO 'scram-sha-256';
CREATE ROLE scram_user PASSWORD 'password' LOGIN;
CREATE ROLE ssl_user LOGIN;
CREATE EXTENSION hstore;
CREATE EXTENSION citext;
CREATE EXTENSION ltree;
