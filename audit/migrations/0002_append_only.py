"""AuditEvent is append-only: the database itself refuses DELETE, and UPDATE other than sealing once.

TRUNCATE is not blocked (a table-level privilege matter for the deployment's
database roles; the test runner flushes tables with it). Tampering by a
superuser who disables the trigger is what the hash chain detects.
"""

from django.db import migrations

SEAL_COLUMNS = "ARRAY['seq', 'prev_hash', 'hash', 'sealed_at']"

FORWARD = f"""
CREATE FUNCTION audit_event_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit events are append-only: DELETE of event % refused', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.seq IS NOT NULL OR OLD.hash <> '' THEN
        RAISE EXCEPTION 'audit events are append-only: event % is sealed and cannot change', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.seq IS NULL OR NEW.hash = '' OR NEW.sealed_at IS NULL
       OR (to_jsonb(NEW) - {SEAL_COLUMNS}) IS DISTINCT FROM (to_jsonb(OLD) - {SEAL_COLUMNS}) THEN
        RAISE EXCEPTION 'audit events are append-only: only sealing (seq, prev_hash, hash, sealed_at) may '
                        'update event %', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_event_append_only
    BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();
"""

REVERSE = """
DROP TRIGGER IF EXISTS audit_event_append_only ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_event_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]
