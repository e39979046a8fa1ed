//! The Flight SQL service: statements, prepared statements and the catalog calls, each
//! authenticated, with its SQL planned and run through the [`QueryBackend`] on `query`.
//!
//! Statements are stateless: `GetFlightInfo` checks the caller and returns a ticket that
//! carries the database and the SQL; `DoGet` plans and runs it once (so a `DROP` runs
//! once, and a bad query fails there, with its gRPC code). Prepared statement handles
//! carry the same, plus the bound parameters once bound (Flight SQL's updated handle);
//! the last bound parameters are also kept by handle id for clients that keep the old
//! handle.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt,
    SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use bulkhead_frontend::limits::{Deadline, Limit, LimitTrips, Protocol};
use bulkhead_frontend::{QueryBackend, QueryError, QueryErrorKind, QueryOutput};
use bulkhead_runtime::sync::Mutex;
use bulkhead_runtime::{RuntimeName, Runtimes};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::error::{flight_status, query_status};
use crate::{FlightSqlOptions, auth, metadata, params};

type DoGetStream = <Service as FlightService>::DoGetStream;

/// Most prepared statements whose bound parameters are kept at once.
const MAX_PREPARED: usize = 10_000;

/// Request headers that name the database, in order: InfluxDB 3's clients send
/// `database`; v2-style clients `bucket` / `bucket-name`.
const DATABASE_HEADERS: [&str; 3] = ["database", "bucket", "bucket-name"];

/// What the service needs, handed in by `bulkhead serve`.
pub(crate) struct Service {
    runtimes: Arc<Runtimes>,
    backend: Arc<dyn QueryBackend>,
    token: Option<String>,
    /// Database of calls that send no database header (`flight_sql.database`).
    default_database: Option<String>,
    query_timeout: Duration,
    auth_failure_delay: Duration,
    trips: Arc<LimitTrips>,
    prepared: Mutex<HashMap<u64, Vec<String>>>,
    next_id: AtomicU64,
}

/// A statement ticket: what `DoGet` runs.
#[derive(Debug, Serialize, Deserialize)]
struct StatementHandle {
    db: Option<String>,
    sql: String,
}

/// A prepared statement's handle.
#[derive(Debug, Serialize, Deserialize)]
struct PreparedHandle {
    id: u64,
    db: Option<String>,
    sql: String,
    /// Placeholders in `sql`.
    count: usize,
    /// The bound row as SQL literals, once bound.
    params: Option<Vec<String>>,
}

impl Service {
    pub(crate) fn new(
        runtimes: Arc<Runtimes>,
        backend: Arc<dyn QueryBackend>,
        options: FlightSqlOptions,
    ) -> Self {
        Self {
            runtimes,
            backend,
            token: options.token,
            default_database: options.database.filter(|d| !d.is_empty()),
            query_timeout: options.query_timeout,
            auth_failure_delay: options.auth_failure_delay,
            trips: options.trips,
            prepared: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    /// Check the call's token; a wrong or missing one is counted and answered after
    /// `auth.failure_delay`, as on the other listeners.
    pub(crate) async fn authorize(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let checked = auth::check(self.token.as_deref(), metadata);
        if checked.is_err() {
            self.trips.trip(Limit::AuthFailure, Protocol::FlightSql);
            tokio::time::sleep(self.auth_failure_delay).await;
        }
        checked
    }

    /// The call's database: a database header, else `flight_sql.database`, else none
    /// (then only fully qualified table names resolve).
    #[allow(clippy::result_large_err)]
    pub(crate) fn database(&self, metadata: &MetadataMap) -> Result<Option<String>, Status> {
        for name in DATABASE_HEADERS {
            if let Some(v) = metadata.get(name) {
                let db = v
                    .to_str()
                    .map_err(|_| Status::invalid_argument(format!("header `{name}` is not ASCII")))?
                    .trim();
                if !db.is_empty() {
                    return Ok(Some(db.to_owned()));
                }
            }
        }
        Ok(self.default_database.clone())
    }

    /// Plan `sql` on `query` within the query timeout; the output is bounded by the
    /// same deadline. Without a database, names resolve in `information_schema`, and a
    /// plan error says that no database was selected.
    async fn plan(&self, db: Option<String>, sql: String) -> Result<QueryOutput, Status> {
        let deadline = Deadline::after(self.query_timeout, "limits.query_timeout");
        let backend = Arc::clone(&self.backend);
        let selected = db.is_some();
        let db = db.unwrap_or_else(|| metadata::CATALOG_DB.to_owned());
        let planning =
            self.runtimes.run(
                RuntimeName::Query,
                async move { backend.sql(&db, &sql).await },
            );
        let error = match deadline.plan(planning).await {
            Ok(Ok(Ok(output))) => return Ok(deadline.bound(output)),
            Ok(Ok(Err(e))) | Err(e) => e,
            Ok(Err(runtime)) => return Err(Status::internal(runtime.to_string())),
        };
        if !selected && matches!(error.kind, QueryErrorKind::Plan | QueryErrorKind::NotFound) {
            return Err(Status::invalid_argument(format!(
                "{} (no database selected: send the `database` header (InfluxDB 3 clients \
                 do; ADBC: adbc.flight.sql.rpc.call_header.database), set \
                 flight_sql.database, or name tables as database.table)",
                error.message
            )));
        }
        Err(self.status(&error))
    }

    /// A query error as a status; a timeout is counted.
    fn status(&self, e: &QueryError) -> Status {
        if e.kind == QueryErrorKind::Timeout {
            self.trips.trip(Limit::QueryTimeout, Protocol::FlightSql);
        }
        query_status(e)
    }

    /// Run `sql` and stream its result: the batches are polled and IPC-encoded on
    /// `query`; the gRPC stream (on `io`) only forwards the encoded messages. When the
    /// client goes away the stream is dropped, which stops the query.
    pub(crate) async fn execute(
        &self,
        db: Option<String>,
        sql: String,
    ) -> Result<Response<DoGetStream>, Status> {
        let QueryOutput { schema, batches } = self.plan(db, sql).await?;
        let (tx, rx) = mpsc::channel(2);
        let trips = Arc::clone(&self.trips);
        self.runtimes.spawn(RuntimeName::Query, async move {
            let mut encoded = FlightDataEncoderBuilder::new()
                .with_schema(schema)
                .build(batches.map_err(FlightError::Arrow));
            loop {
                let next = tokio::select! {
                    next = encoded.next() => next,
                    () = tx.closed() => {
                        trips.trip(Limit::ClientGone, Protocol::FlightSql);
                        tracing::debug!("Flight SQL client went away; cancelling its query");
                        return;
                    }
                };
                let Some(next) = next else { return };
                let next = next.map_err(flight_status);
                let failed = next.is_err();
                if matches!(&next, Err(s) if s.code() == tonic::Code::DeadlineExceeded) {
                    trips.trip(Limit::QueryTimeout, Protocol::FlightSql);
                }
                if tx.send(next).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx).boxed()))
    }

    /// Run `sql` on `query` and collect its (small) result: the catalog calls.
    pub(crate) async fn collect(&self, sql: String) -> Result<Vec<RecordBatch>, Status> {
        self.collect_in(Some(metadata::CATALOG_DB.to_owned()), sql)
            .await
    }

    /// Run `sql` with `db` as the default database and collect its result.
    async fn collect_in(
        &self,
        db: Option<String>,
        sql: String,
    ) -> Result<Vec<RecordBatch>, Status> {
        let QueryOutput { batches, .. } = self.plan(db, sql).await?;
        let collecting = self.runtimes.run(RuntimeName::Query, batches.try_collect());
        match collecting.await {
            Ok(Ok(batches)) => Ok(batches),
            Ok(Err(e)) => Err(self.status(&crate::error::classify(e))),
            Err(runtime) => Err(Status::internal(runtime.to_string())),
        }
    }

    /// The result schema of a query (planned, not run), as `DoGet` sends it.
    pub(crate) async fn result_schema(
        &self,
        db: Option<String>,
        sql: String,
    ) -> Result<Schema, Status> {
        Ok(hydrated(&self.plan(db, sql).await?.schema))
    }
}

/// A FlightInfo whose one endpoint's ticket is `ticket`.
fn flight_info(
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
    schema: Option<&Schema>,
) -> Result<FlightInfo, Status> {
    let mut info = FlightInfo::new()
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor);
    if let Some(schema) = schema {
        info = info
            .try_with_schema(schema)
            .map_err(|e| Status::internal(format!("cannot encode the schema: {e}")))?;
    }
    Ok(info)
}

/// `schema` with dictionary columns (Bulkhead's tags) as their value type: the
/// encoder sends their values (not every Flight client reads dictionary batches), so
/// every schema the service describes says the same.
pub(crate) fn hydrated(schema: &Schema) -> Schema {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            arrow::datatypes::DataType::Dictionary(_, value) => {
                Arc::new(f.as_ref().clone().with_data_type(value.as_ref().clone()))
            }
            _ => Arc::clone(f),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

fn schema_bytes(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let message = IpcMessage::try_from(SchemaAsIpc::new(schema, &IpcWriteOptions::default()))
        .map_err(|e| Status::internal(format!("cannot encode the schema: {e}")))?;
    Ok(message.0)
}

#[allow(clippy::result_large_err)]
fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Status> {
    serde_json::from_slice(bytes)
        .map_err(|_| Status::invalid_argument(format!("invalid {what}: not issued by this server")))
}

fn encode<T: Serialize>(value: &T) -> bytes::Bytes {
    serde_json::to_vec(value).expect("handles serialize").into()
}

/// Whether planning `sql` only reads (queries, EXPLAIN, SHOW): only such statements are
/// planned to describe them, since planning a `DROP` runs it.
fn is_read_only(sql: &str) -> bool {
    use sqlparser::ast::Statement;
    use sqlparser::dialect::GenericDialect;
    match sqlparser::parser::Parser::parse_sql(&GenericDialect {}, sql) {
        Ok(statements) => statements.iter().all(|s| {
            matches!(
                s,
                Statement::Query(_)
                    | Statement::Explain { .. }
                    | Statement::ShowTables { .. }
                    | Statement::ShowColumns { .. }
                    | Statement::ShowVariable { .. }
            )
        }),
        // Not readable by the generic dialect: let the query layer report the error.
        Err(_) => true,
    }
}

#[tonic::async_trait]
impl FlightSqlService for Service {
    type FlightService = Service;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        self.authorize(request.metadata()).await?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: bytes::Bytes::new(),
        };
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        if let Some(token) = &self.token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| Status::internal("the token is not a valid header value"))?;
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(request.metadata()).await?;
        let db = self.database(request.metadata())?;
        let handle = encode(&StatementHandle {
            db,
            sql: query.query,
        });
        let ticket = TicketStatementQuery {
            statement_handle: handle,
        };
        let info = flight_info(ticket.as_any().encode_to_vec(), request.into_inner(), None)?;
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.authorize(request.metadata()).await?;
        let handle: StatementHandle = decode(&ticket.statement_handle, "statement ticket")?;
        self.execute(handle.db, handle.sql).await
    }

    /// `DoPut` of a statement run for its effect (`DELETE`, `DROP`; JDBC's
    /// `executeUpdate`, ADBC's `execute_update`). Bulkhead does not count the rows a
    /// delete removes, so the count is -1, "unknown" in Flight SQL.
    async fn do_put_statement_update(
        &self,
        ticket: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.authorize(request.metadata()).await?;
        let db = self.database(request.metadata())?;
        self.collect_in(db, ticket.query).await?;
        Ok(-1)
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        self.authorize(request.metadata()).await?;
        let db = self.database(request.metadata())?;
        let sql = query.query;
        let count = params::placeholder_count(&sql)?;
        let dataset_schema = if is_read_only(&sql) {
            // Described with every parameter NULL; the stream is dropped unpolled.
            let nulls = vec!["NULL".to_owned(); count];
            let planned = params::substitute(&sql, &nulls)?;
            schema_bytes(&self.result_schema(db.clone(), planned).await?)?
        } else {
            bytes::Bytes::new()
        };
        let handle = PreparedHandle {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            db,
            sql,
            count,
            params: None,
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: encode(&handle),
            dataset_schema,
            parameter_schema: bytes::Bytes::new(),
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.authorize(request.metadata()).await?;
        let mut handle: PreparedHandle = decode(
            &query.prepared_statement_handle,
            "prepared statement handle",
        )?;
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(
            request.into_inner().map_err(FlightError::from),
        )
        .try_collect()
        .await
        .map_err(|e| Status::invalid_argument(format!("cannot read the parameters: {e}")))?;
        let literals = params::row_literals(&batches)?;
        // Fail at bind time when the row does not fit the statement.
        params::substitute(&handle.sql, &literals)?;
        {
            let mut prepared = self.prepared.lock();
            if prepared.len() >= MAX_PREPARED && !prepared.contains_key(&handle.id) {
                return Err(Status::resource_exhausted(format!(
                    "more than {MAX_PREPARED} prepared statements hold parameters; close some"
                )));
            }
            prepared.insert(handle.id, literals.clone());
        }
        handle.params = Some(literals);
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(encode(&handle)),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(request.metadata()).await?;
        let _: PreparedHandle =
            decode(&cmd.prepared_statement_handle, "prepared statement handle")?;
        let info = flight_info(cmd.as_any().encode_to_vec(), request.into_inner(), None)?;
        Ok(Response::new(info))
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.authorize(request.metadata()).await?;
        let handle: PreparedHandle =
            decode(&cmd.prepared_statement_handle, "prepared statement handle")?;
        let bound = handle
            .params
            .or_else(|| self.prepared.lock().get(&handle.id).cloned());
        let sql = match bound {
            Some(values) => params::substitute(&handle.sql, &values)?,
            None if handle.count == 0 => handle.sql,
            None => {
                return Err(Status::invalid_argument(format!(
                    "the prepared statement has {} parameter(s): bind them before executing it",
                    handle.count
                )));
            }
        };
        self.execute(handle.db, sql).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        self.authorize(request.metadata()).await?;
        let handle: PreparedHandle = decode(
            &query.prepared_statement_handle,
            "prepared statement handle",
        )?;
        self.prepared.lock().remove(&handle.id);
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(request.metadata()).await?;
        let schema = query.into_builder().schema();
        let info = flight_info(
            query.as_any().encode_to_vec(),
            request.into_inner(),
            Some(&schema),
        )?;
        Ok(Response::new(info))
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.authorize(request.metadata()).await?;
        let batch = metadata::catalogs(self, query).await?;
        Ok(Response::new(one_batch(Ok(batch))))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(request.metadata()).await?;
        let schema = query.clone().into_builder().schema();
        let info = flight_info(
            query.as_any().encode_to_vec(),
            request.into_inner(),
            Some(&schema),
        )?;
        Ok(Response::new(info))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.authorize(request.metadata()).await?;
        let batch = metadata::schemas(self, query).await?;
        Ok(Response::new(one_batch(Ok(batch))))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(request.metadata()).await?;
        let schema = query.clone().into_builder().schema();
        let info = flight_info(
            query.as_any().encode_to_vec(),
            request.into_inner(),
            Some(&schema),
        )?;
        Ok(Response::new(info))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.authorize(request.metadata()).await?;
        let batch = metadata::tables(self, query).await?;
        Ok(Response::new(one_batch(Ok(batch))))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(request.metadata()).await?;
        let schema = query.into_builder().schema();
        let info = flight_info(
            query.as_any().encode_to_vec(),
            request.into_inner(),
            Some(&schema),
        )?;
        Ok(Response::new(info))
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.authorize(request.metadata()).await?;
        Ok(Response::new(one_batch(metadata::table_types(query))))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(request.metadata()).await?;
        let schema = query.clone().into_builder(metadata::sql_info()).schema();
        let info = flight_info(
            query.as_any().encode_to_vec(),
            request.into_inner(),
            Some(&schema),
        )?;
        Ok(Response::new(info))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.authorize(request.metadata()).await?;
        let batch = query
            .into_builder(metadata::sql_info())
            .build()
            .map_err(|e| Status::internal(e.to_string()));
        Ok(Response::new(one_batch(batch)))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// One small batch (a catalog answer) as a Flight data stream.
fn one_batch(batch: Result<RecordBatch, Status>) -> DoGetStream {
    match batch {
        Ok(batch) => FlightDataEncoderBuilder::new()
            .with_schema(batch.schema())
            .build(futures::stream::once(async { Ok(batch) }))
            .map_err(flight_status)
            .boxed(),
        Err(status) => futures::stream::once(async { Err(status) }).boxed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field};

    #[test]
    fn only_reads_are_planned_to_describe_them() {
        assert!(is_read_only("select * from cpu where host = ?"));
        assert!(is_read_only("with t as (select 1) select * from t"));
        assert!(is_read_only("explain select 1"));
        assert!(!is_read_only("drop table cpu"));
        assert!(!is_read_only("select 1; drop table cpu"));
    }

    #[test]
    fn described_schemas_send_tags_as_values() {
        let tag = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let schema = Schema::new(vec![
            Field::new("host", tag, true),
            Field::new("usage", DataType::Float64, true),
        ]);
        let plain = hydrated(&schema);
        assert_eq!(plain.field(0).data_type(), &DataType::Utf8);
        assert_eq!(plain.field(0).name(), "host");
        assert_eq!(plain.field(1), schema.field(1));
    }

    #[test]
    fn handles_from_elsewhere_are_refused() {
        let err = decode::<PreparedHandle>(b"garbage", "prepared statement handle").unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let handle = PreparedHandle {
            id: 3,
            db: Some("demo".into()),
            sql: "select ?".into(),
            count: 1,
            params: Some(vec!["1".into()]),
        };
        let back: PreparedHandle = decode(&encode(&handle), "handle").unwrap();
        assert_eq!(back.params, Some(vec!["1".to_owned()]));
        assert_eq!(
            (back.id, back.db.as_deref(), back.count),
            (3, Some("demo"), 1)
        );
    }
}
