//! The DataFusion session over a data directory: every promolens table registered under its name.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use promolens_ingest::Storage;
use promolens_ingest::visible_store::VisibleStore;
use promolens_schemas::tables::{
    LAUNCH_EVENTS, LAUNCH_EVENTS_PARTITIONS, USER_FIRST_SEEN, USER_FIRST_SEEN_PARTITIONS,
    launch_events_file_schema, user_first_seen_file_schema,
};

use crate::error::Result;

/// A session with `launch_events` and `user_first_seen` registered over `storage`.
///
/// The session may live as long as the server: file listings are not cached (new Parquet files
/// arrive every flush), and go through [`VisibleStore`] so that files replaced by a compaction
/// are never read beside their replacement.
pub fn session(storage: &Storage) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema("promolens", "public");
    let runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(CacheManagerConfig::default().with_list_files_cache_limit(0))
        .build_arc()?;
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    ctx.register_object_store(
        &storage.store_url,
        Arc::new(VisibleStore::new(storage.store.clone())),
    );

    register(
        &ctx,
        storage,
        LAUNCH_EVENTS,
        launch_events_file_schema(),
        &LAUNCH_EVENTS_PARTITIONS,
    )?;
    register(
        &ctx,
        storage,
        USER_FIRST_SEEN,
        user_first_seen_file_schema(),
        &USER_FIRST_SEEN_PARTITIONS,
    )?;
    Ok(ctx)
}

/// Registers the hive-partitioned Parquet table `name` stored under the folder of that name.
fn register(
    ctx: &SessionContext,
    storage: &Storage,
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
    let url = ListingTableUrl::parse(storage.url(name))?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(file_schema);
    ctx.register_table(name, Arc::new(ListingTable::try_new(config)?))?;
    Ok(())
}
