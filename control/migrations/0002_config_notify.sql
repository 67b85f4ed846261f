-- Hot reload: every statement that changes a configuration table sends
-- NOTIFY smppgw_config, '<table name>' when its transaction commits. Gateways LISTEN on the channel
-- and reload. Triggers are per statement, so a bulk change costs one notification per table, and
-- PostgreSQL folds identical notifications of one transaction into one.

CREATE FUNCTION smppgw_notify_config() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('smppgw_config', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER smppgw_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON smppgw_settings
    FOR EACH STATEMENT EXECUTE FUNCTION smppgw_notify_config();
CREATE TRIGGER smppgw_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON smppgw_customers
    FOR EACH STATEMENT EXECUTE FUNCTION smppgw_notify_config();
CREATE TRIGGER smppgw_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON smppgw_number_ranges
    FOR EACH STATEMENT EXECUTE FUNCTION smppgw_notify_config();
CREATE TRIGGER smppgw_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON smppgw_vendors
    FOR EACH STATEMENT EXECUTE FUNCTION smppgw_notify_config();
CREATE TRIGGER smppgw_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON smppgw_routes
    FOR EACH STATEMENT EXECUTE FUNCTION smppgw_notify_config();
CREATE TRIGGER smppgw_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON smppgw_route_vendors
    FOR EACH STATEMENT EXECUTE FUNCTION smppgw_notify_config();
CREATE TRIGGER smppgw_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON smppgw_route_customers
    FOR EACH STATEMENT EXECUTE FUNCTION smppgw_notify_config();
CREATE TRIGGER smppgw_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON smppgw_brands
    FOR EACH STATEMENT EXECUTE FUNCTION smppgw_notify_config();
CREATE TRIGGER smppgw_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON smppgw_campaigns
    FOR EACH STATEMENT EXECUTE FUNCTION smppgw_notify_config();
CREATE TRIGGER smppgw_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON smppgw_campaign_numbers
    FOR EACH STATEMENT EXECUTE FUNCTION smppgw_notify_config();
