import uuid

import django.db.models.deletion
from django.db import migrations, models


def goals_to_metrics(apps, schema_editor):
    """Each experience's goal becomes its primary conversion metric, window and condition kept."""
    Experience = apps.get_model("experiences", "Experience")
    Metric = apps.get_model("experiences", "Metric")
    Metric.objects.bulk_create(
        Metric(
            experience_id=experience.pk,
            ref=uuid.uuid4(),
            role="primary",
            kind="conversion",
            event=experience.goal_event,
            condition=experience.goal_condition,
            window_days=experience.goal_window_days,
        )
        for experience in Experience.objects.exclude(goal_event="")
    )


def metrics_to_goals(apps, schema_editor):
    Experience = apps.get_model("experiences", "Experience")
    Metric = apps.get_model("experiences", "Metric")
    for metric in Metric.objects.filter(role="primary", kind="conversion"):
        Experience.objects.filter(pk=metric.experience_id).update(
            goal_event=metric.event,
            goal_condition=metric.condition,
            goal_window_days=metric.window_days,
        )


class Migration(migrations.Migration):
    dependencies = [("experiences", "0002_variant_one_control")]

    operations = [
        migrations.CreateModel(
            name="Metric",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("ref", models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                ("name", models.CharField(blank=True, help_text="Shown in results; optional.", max_length=200)),
                ("role", models.CharField(choices=[("primary", "Primary"), ("secondary", "Secondary"), ("guardrail", "Guardrail")], default="primary", max_length=10)),
                ("kind", models.CharField(choices=[("conversion", "Conversion"), ("count", "Count per guest"), ("sum", "Sum per guest")], default="conversion", max_length=10)),
                ("event", models.CharField(max_length=255)),
                ("condition", models.JSONField(blank=True, help_text='Optional {"property": P, "op": OP, "value": V}.', null=True)),
                ("property", models.CharField(blank=True, help_text="For a sum: the numeric event property, e.g. revenue.", max_length=255)),
                ("window_days", models.PositiveSmallIntegerField(default=14, verbose_name="days")),
                ("guardrail_direction", models.CharField(blank=True, choices=[("must_not_drop", "must not drop"), ("must_not_rise", "must not rise")], help_text="For a guardrail: which way it must not move.", max_length=13, verbose_name="guardrail")),
                ("guardrail_threshold", models.FloatField(blank=True, help_text="For a guardrail: the change allowed, in percent.", null=True, verbose_name="by %")),
                ("experience", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="metrics", to="experiences.experience")),
            ],
            options={"ordering": ["pk"]},
        ),
        migrations.AddField(
            model_name="experience",
            name="sequential_testing",
            field=models.BooleanField(default=True, help_text="Always-valid results: safe to look every day and stop when they are clear."),
        ),
        migrations.AddField(
            model_name="experience",
            name="cuped",
            field=models.BooleanField(default=True, help_text="Reduce variance with each guest's same metric in the 14 days before exposure.", verbose_name="CUPED"),
        ),
        migrations.AddField(
            model_name="experience",
            name="correction",
            field=models.CharField(choices=[("holm", "Holm–Bonferroni (family-wise error)"), ("bh", "Benjamini–Hochberg (false discovery rate)")], default="holm", help_text="How p-values are corrected across variants and primary/secondary metrics.", max_length=4),
        ),
        migrations.AddField(
            model_name="experience",
            name="live_since",
            field=models.DateTimeField(blank=True, editable=False, help_text="When it first went live.", null=True),
        ),
        migrations.RunPython(goals_to_metrics, metrics_to_goals),
        migrations.RemoveField(model_name="experience", name="goal_event"),
        migrations.RemoveField(model_name="experience", name="goal_condition"),
        migrations.RemoveField(model_name="experience", name="goal_window_days"),
    ]
