//! The DataFusion session over a data directory: every promolens table registered under its name.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::{SessionConfig, SessionContext};
use promolens_ingest::Storage;
use promolens_schemas::tables::{LAUNCH_EVENTS, launch_events_file_schema};

use crate::error::Result;

/// A session with `launch_events` registered over `storage`.
pub fn session(storage: &Storage) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema("promolens", "public");
    let ctx = SessionContext::new_with_config(config);
    ctx.register_object_store(&storage.store_url, storage.store.clone());

    let partitions = promolens_schemas::tables::launch_events_partition_fields()
        .into_iter()
        .map(|f| (f.name().clone(), DataType::Utf8))
        .collect();
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(partitions);
    let url = ListingTableUrl::parse(storage.url(LAUNCH_EVENTS))?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(launch_events_file_schema());
    ctx.register_table(LAUNCH_EVENTS, Arc::new(ListingTable::try_new(config)?))?;
    Ok(ctx)
}
