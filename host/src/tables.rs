//! The DataFusion session over a data directory: every promolens table registered under its name.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::{ScanArgs, ScanResult, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext, col, lit};
use promolens_ingest::Storage;
use promolens_ingest::visible_store::VisibleStore;
use promolens_schemas::tables::{
    EVENTS, EVENTS_PARTITIONS, LAUNCH_EVENTS, LAUNCH_EVENTS_PARTITIONS, PROMO_CODE_RECORDS_DIR,
    PROMO_CODES, USER_FIRST_SEEN, USER_FIRST_SEEN_PARTITIONS, events_file_schema,
    launch_events_file_schema, promo_code_record_schema, user_first_seen_file_schema,
};

use crate::access::audit::AUDIT_LOG;
use crate::error::Result;
use crate::saved_analyses::SAVED_ANALYSES;

/// A session with `launch_events`, `events`, `user_first_seen`, `promo_codes` and
/// `saved_analyses` registered over `storage`.
///
/// The session may live as long as the server: file listings are not cached (new Parquet files
/// arrive every flush), and go through [`VisibleStore`] so that files replaced by a compaction
/// are never read beside their replacement.
pub async fn session(storage: &Storage) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema(CATALOG, "public");
    let runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(CacheManagerConfig::default().with_list_files_cache_limit(0))
        .build_arc()?;
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    // The tables see the data directory as the root of a store of their own, so that plans and
    // errors name `launch_events/…`, never the server's paths (`EXPLAIN` is open to analysts).
    let data = object_store::prefix::PrefixStore::new(
        VisibleStore::new(storage.store.clone()),
        storage.prefix.clone(),
    );
    ctx.register_object_store(
        &url::Url::parse(DATA_URL).expect("static URL"),
        Arc::new(data),
    );

    register(
        &ctx,
        LAUNCH_EVENTS,
        launch_events_file_schema(),
        &LAUNCH_EVENTS_PARTITIONS,
    )?;
    register(&ctx, EVENTS, events_file_schema(), &EVENTS_PARTITIONS)?;
    register(
        &ctx,
        USER_FIRST_SEEN,
        user_first_seen_file_schema(),
        &USER_FIRST_SEEN_PARTITIONS,
    )?;
    register_promo_codes(&ctx).await?;
    register_saved_analyses(&ctx).await?;
    register_audit_log(&ctx)?;
    ctx.register_udf(crate::code_links::ScanKeyFunction::udf());
    ctx.register_udf(crate::props::PropFunction::udf());
    Ok(ctx)
}

/// The tables SQL from a project's key sees (and `audit_log` for its admins).
pub const PROJECT_TABLES: [&str; 5] = [
    LAUNCH_EVENTS,
    EVENTS,
    USER_FIRST_SEEN,
    PROMO_CODES,
    SAVED_ANALYSES,
];

/// What SQL from a key of `role` sees: the project's tables and views (and `audit_log` for
/// those who may read it).
pub fn tables_of(role: crate::access::Role) -> Vec<&'static str> {
    let mut tables = PROJECT_TABLES.to_vec();
    tables.extend(PROJECT_VIEWS);
    if role.allows(crate::access::Permission::ReadAudit) {
        tables.push(crate::access::audit::AUDIT_LOG);
    }
    tables
}

/// Views every SQL door shows beside [`PROJECT_TABLES`] (defined over them; see
/// [`register_views`]).
pub const PROJECT_VIEWS: [&str; 2] = [FIRST_TOUCH, ACQUISITION_DAILY];
/// Each user's first launch and its attribution.
pub const FIRST_TOUCH: &str = "first_touch";
/// New users, users and launches per day (the project's `dt`) and code and UTM values.
pub const ACQUISITION_DAILY: &str = "acquisition_daily";
/// The catalog the tables are in (`current_database()` to a PostgreSQL client).
pub const CATALOG: &str = "promolens";

/// `first_touch` and `acquisition_daily` over a project session's `launch_events` and
/// `promo_codes`. Per anonymous `user_id` (logins are not merged here, as the analyses merge
/// them); a code reference's UTM values come from its record where the launch carries none.
async fn register_views(ctx: &SessionContext) -> Result<()> {
    let launches = "SELECT l.user_id, l.event_id, l.event_time, l.dt, l.scene, l.path,
               l.launch_type, l.code_id, l.code_kind,
               coalesce(l.utm_source, c.utm_source) AS utm_source,
               coalesce(l.utm_medium, c.utm_medium) AS utm_medium,
               coalesce(l.utm_campaign, c.utm_campaign) AS utm_campaign,
               coalesce(l.utm_content, c.utm_content) AS utm_content,
               coalesce(l.utm_term, c.utm_term) AS utm_term
        FROM launch_events l LEFT JOIN promo_codes c ON c.code_id = l.code_id";
    let first_touch = format!(
        "CREATE VIEW {FIRST_TOUCH} AS
         SELECT user_id, event_id, event_time AS first_time, dt AS first_day, scene, path,
                launch_type, code_id, code_kind, utm_source, utm_medium, utm_campaign,
                utm_content, utm_term
         FROM (SELECT *, row_number() OVER (PARTITION BY user_id ORDER BY event_time, event_id)
                         AS launch_number
               FROM ({launches}) launches)
         WHERE launch_number = 1"
    );
    let daily = format!(
        "CREATE VIEW {ACQUISITION_DAILY} AS
         SELECT l.dt AS day, l.code_id, l.utm_source, l.utm_medium, l.utm_campaign,
                l.utm_content, l.utm_term,
                count(f.event_id) AS new_users, count(DISTINCT l.user_id) AS users,
                count(*) AS launches
         FROM ({launches}) l LEFT JOIN {FIRST_TOUCH} f ON f.event_id = l.event_id
         GROUP BY 1, 2, 3, 4, 5, 6, 7"
    );
    for view in [first_touch, daily] {
        ctx.sql(&view).await?.collect().await?;
    }
    Ok(())
}

/// A session over one project's rows only, for SQL sent with that project's key: each of
/// `tables` is a view of the shared session's table filtered to the project (the filter prunes
/// other projects' partitions before any file is listed), and nothing else is registered, so no
/// statement can name a way to another project's rows.
/// `runtime` is `shared`'s, or one with the SQL doors' memory pool
/// ([`crate::sql::SqlLimits::runtime`]).
pub async fn project_session(
    shared: &SessionContext,
    project: &str,
    tables: &[&str],
    runtime: Arc<RuntimeEnv>,
) -> Result<SessionContext> {
    let ctx = SessionContext::new_with_config_rt(shared.copied_config(), runtime);
    for &name in tables.iter().filter(|t| !PROJECT_VIEWS.contains(t)) {
        let rows = shared
            .table(name)
            .await?
            .filter(col("project").eq(lit(project)))?;
        ctx.register_table(name, Arc::new(ProjectTable(rows.into_view())))?;
    }
    if PROJECT_VIEWS.iter().any(|v| tables.contains(v)) {
        register_views(&ctx).await?;
    }
    ctx.register_udf(crate::code_links::ScanKeyFunction::udf());
    ctx.register_udf(crate::props::PropFunction::udf());
    Ok(ctx)
}

/// `audit_log`: the JSON records of [`crate::access::audit`].
fn register_audit_log(ctx: &SessionContext) -> Result<()> {
    let options = ListingOptions::new(Arc::new(JsonFormat::default()))
        .with_file_extension(".json")
        .with_table_partition_cols(vec![
            ("project".to_string(), DataType::Utf8),
            ("dt".to_string(), DataType::Utf8),
        ]);
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("key_id", DataType::Utf8, false),
        Field::new("action", DataType::Utf8, false),
        Field::new("target", DataType::Utf8, false),
        Field::new("outcome", DataType::Utf8, false),
    ]));
    let config = ListingTableConfig::new(table_url(AUDIT_LOG)?)
        .with_listing_options(options)
        .with_schema(schema);
    ctx.register_table(AUDIT_LOG, Arc::new(ListingTable::try_new(config)?))?;
    Ok(())
}

/// `saved_analyses`: a view over the current records of [`crate::saved_analyses`], the spec as
/// JSON text.
async fn register_saved_analyses(ctx: &SessionContext) -> Result<()> {
    let options = ListingOptions::new(Arc::new(JsonFormat::default()))
        .with_file_extension(".json")
        .with_table_partition_cols(vec![("project".to_string(), DataType::Utf8)]);
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    let schema = Arc::new(Schema::new(vec![
        text("id", false),
        text("name", false),
        text("spec", false),
        Field::new("version", DataType::Int64, false),
        Field::new("created_at_ms", DataType::Int64, false),
        Field::new("updated_at_ms", DataType::Int64, false),
        text("updated_by", true),
    ]));
    let config = ListingTableConfig::new(table_url(SAVED_ANALYSES)?)
        .with_listing_options(options)
        .with_schema(schema);
    ctx.register_table(
        "saved_analysis_records",
        Arc::new(ListingTable::try_new(config)?),
    )?;
    ctx.sql(&format!(
        "CREATE VIEW {SAVED_ANALYSES} AS SELECT
            id, project, name, version, spec,
            to_timestamp_millis(created_at_ms) AS created_at,
            to_timestamp_millis(updated_at_ms) AS updated_at,
            updated_by
         FROM saved_analysis_records"
    ))
    .await?;
    Ok(())
}

/// `promo_codes`: a view with DESIGN.md §4's columns over the plugin's JSON code records.
async fn register_promo_codes(ctx: &SessionContext) -> Result<()> {
    let options = ListingOptions::new(Arc::new(JsonFormat::default()))
        // Records are named by their id, without an extension.
        .with_file_extension("")
        .with_table_partition_cols(vec![("project".to_string(), DataType::Utf8)]);
    let url = table_url(PROMO_CODE_RECORDS_DIR)?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(promo_code_record_schema());
    ctx.register_table(
        "promo_code_records",
        Arc::new(ListingTable::try_new(config)?),
    )?;
    ctx.sql(&format!(
        "CREATE VIEW {PROMO_CODES} AS SELECT
            id AS code_id, project, name, kind, page,
            coalesce(encoding['path'], encoding['scene']) AS payload,
            encoding['by_reference'] AS by_reference,
            utm['source'] AS utm_source, utm['medium'] AS utm_medium,
            utm['campaign'] AS utm_campaign, utm['content'] AS utm_content,
            utm['term'] AS utm_term,
            to_timestamp_millis(created_at_ms) AS created_at,
            to_timestamp_millis(updated_at_ms) AS updated_at,
            to_timestamp_millis(deleted_at_ms) AS deleted_at
         FROM promo_code_records"
    ))
    .await?;
    Ok(())
}

/// The root under which the session finds the data directory.
const DATA_URL: &str = "promolens://data/";

/// A folder of the data directory, as the session reads it.
fn table_url(folder: &str) -> Result<ListingTableUrl> {
    Ok(ListingTableUrl::parse(format!("{DATA_URL}{folder}/"))?)
}

/// Registers the hive-partitioned Parquet table `name` stored under the folder of that name.
fn register(
    ctx: &SessionContext,
    name: &str,
    file_schema: SchemaRef,
    partitions: &[&str],
) -> Result<()> {
    // Partition values are strings in the path (`dt=2025-11-24`), and stay strings.
    let partitions = partitions
        .iter()
        .map(|p| (p.to_string(), DataType::Utf8))
        .collect();
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(partitions);
    let url = table_url(name)?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(file_schema);
    ctx.register_table(name, Arc::new(ListingTable::try_new(config)?))?;
    Ok(())
}

/// One project's rows of a shared table: a view of it filtered to the project, shown to SQL
/// clients as the table it stands for (`pg_class` says `r`, `information_schema` `BASE
/// TABLE`), so that BI tools listing a database's tables find it.
#[derive(Debug)]
struct ProjectTable(Arc<dyn TableProvider>);

#[async_trait::async_trait]
impl TableProvider for ProjectTable {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_logical_plan(&self) -> Option<std::borrow::Cow<'_, LogicalPlan>> {
        self.0.get_logical_plan()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        self.0.scan(state, projection, filters, limit).await
    }

    async fn scan_with_args<'a>(
        &self,
        state: &dyn Session,
        args: ScanArgs<'a>,
    ) -> datafusion::error::Result<ScanResult> {
        self.0.scan_with_args(state, args).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        self.0.supports_filters_pushdown(filters)
    }
}
